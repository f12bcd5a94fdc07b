require ["body", "fileinto"];
if body :raw :contains "R=C3=A9union" { fileinto "Raw"; }
