require ["regex", "fileinto"];
if header :regex "subject" "MEETING|PATCH|INVOICE" { fileinto "Ci"; }
if header :regex :comparator "i;octet" "subject" "MEETING|PATCH|INVOICE" { fileinto "Cs"; }
