require ["fileinto", "copy"];
if address :domain "from" "example.org" { fileinto :copy "Org"; }
