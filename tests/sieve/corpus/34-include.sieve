require ["include", "fileinto"];
include :personal "lists";
if header :contains "subject" "meeting" { fileinto "Meet"; }
