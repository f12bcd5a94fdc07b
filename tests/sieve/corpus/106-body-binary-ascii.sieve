require ["body", "fileinto", "comparator-i;octet"];
if body :comparator "i;octet" :contains "Invoice" { fileinto "CaseInvoice"; }
if body :content "text/plain" :matches "*1234*" { fileinto "Glob"; }
