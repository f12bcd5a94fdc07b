require ["body", "fileinto"];
if body :content "multipart" :contains "--inner" { fileinto "Prologue"; }
if body :content "text" :contains "1234" { fileinto "Text1234"; }
