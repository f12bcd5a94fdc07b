require ["fileinto", "mailboxid"];
if mailboxidexists "F0123" { discard; }
fileinto "ById";
