require ["regex", "fileinto"];
if header :regex "subject" "\\[PATCH [0-9]+/[0-9]+\\]" { fileinto "Patches"; }
