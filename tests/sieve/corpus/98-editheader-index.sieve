require ["editheader", "fileinto", "relational", "comparator-i;ascii-numeric"];
addheader :last "X-Tag" "one";
addheader :last "X-Tag" "two";
deleteheader :index 1 "x-tag";
if header :is "x-tag" "two" { fileinto "KeptTwo"; }
if header :count "eq" :comparator "i;ascii-numeric" "x-tag" "1" { fileinto "OneTag"; }
