require ["variables", "fileinto"];
if header :matches "subject" "[*] *" { set :lower "list" "${1}"; fileinto "lists.${list}"; }
