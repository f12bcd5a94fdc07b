require ["imap4flags", "variables", "fileinto"];
set "f1" "a b"; set "f2" "c";
if hasflag :is ["f1", "f2"] "c" { fileinto "HasC"; }
if hasflag :count "eq" :comparator "i;ascii-numeric" ["f1", "f2"] "3" { fileinto "Three"; }
