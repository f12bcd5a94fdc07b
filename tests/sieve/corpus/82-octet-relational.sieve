require ["relational", "fileinto"];
if header :value "lt" :comparator "i;octet" "subject" "N" { fileinto "BeforeN"; }
if address :value "gt" :domain "from" "example.m" { fileinto "AfterM"; }
