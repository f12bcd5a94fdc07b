require ["fileinto", "mailbox"];
if mailboxexists "INBOX" { fileinto :create "Created"; }
if mailboxexists "Nope" { discard; }
