require ["editheader", "fileinto"];
deleteheader :matches "subject" "*meeting*";
if not exists "subject" { fileinto "NoSubject"; }
