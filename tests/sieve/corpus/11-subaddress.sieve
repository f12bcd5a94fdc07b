require ["envelope", "subaddress", "fileinto"];
if envelope :detail "to" "sieve" { fileinto "Detail"; }
if address :user "from" "alice" { fileinto "User"; }
if address :detail "to" "work" { fileinto "Work"; }
