require ["include", "fileinto"];
if exists "list-id" { return; }
fileinto "NotList";
