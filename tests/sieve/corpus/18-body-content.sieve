require ["body", "fileinto"];
if body :content "text/html" :contains "<b>" { fileinto "Html"; }
if body :content "application" :contains "JVBER" { fileinto "Pdf"; }
