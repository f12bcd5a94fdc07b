require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto "S8"; }
elsif spamtest :value "ge" :comparator "i;ascii-numeric" "4" { fileinto "S4"; }
elsif spamtest :value "ge" :comparator "i;ascii-numeric" "2" { fileinto "S2"; }
