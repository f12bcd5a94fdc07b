require ["editheader", "fileinto"];
addheader "X-Sieve" "seen";
if header :is "x-sieve" "seen" { fileinto "Edited"; }
deleteheader "x-spam-score";
if not exists "x-spam-score" { fileinto "NoScore"; }
