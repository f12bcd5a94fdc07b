require ["index", "date", "fileinto"];
if header :index 2 :contains "received" "dev.example.org" { fileinto "Second"; }
if address :index 2 :is "cc" "erin@example.org" { fileinto "Erin"; }
