require ["date", "index", "fileinto"];
if header :index 1 :last :contains "received" "dev.example.org" { fileinto "First"; }
