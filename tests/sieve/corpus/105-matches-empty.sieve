require ["variables", "fileinto"];
if header :matches "subject" "*" { set "s" "${1}"; }
if string :matches "${s}" "?*" { fileinto "NonEmpty"; }
if string :is "${nonexistent}" "" { fileinto "EmptyVar"; }
