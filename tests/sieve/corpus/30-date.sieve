require ["date", "relational", "fileinto"];
if date :value "ge" :originalzone "date" "hour" "09" { fileinto "Late"; }
if date :is :originalzone "date" "date" "2026-12-08" { fileinto "Today"; }
