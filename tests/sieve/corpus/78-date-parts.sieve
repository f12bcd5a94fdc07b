require ["date", "variables", "fileinto"];
if date :originalzone :matches "date" "std11" "*" { set "s" "${0}"; }
if date :zone "+0000" :matches "date" "julian" "*" { set "j" "${0}"; }
if date :zone "+0530" :matches "date" "iso8601" "*" { set "i" "${0}"; }
fileinto "D.${j}.${i}";
