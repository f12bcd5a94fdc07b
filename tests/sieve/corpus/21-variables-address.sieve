require ["variables", "fileinto"];
if address :matches :localpart "from" "*" { fileinto "from.${1}"; }
