require ["envelope", "fileinto"];
if envelope :localpart :is "from" "alice+news" { fileinto "Env"; }
if envelope :domain "to" "example.com" { fileinto "ToCom"; }
