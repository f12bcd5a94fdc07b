require ["regex", "fileinto"];
if header :regex "subject" "(a+)+$" { fileinto "Never"; }
