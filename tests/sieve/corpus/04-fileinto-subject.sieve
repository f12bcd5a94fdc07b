require "fileinto";
if header :contains "subject" "meeting" { fileinto "Meetings"; }
elsif header :contains "subject" "invoice" { fileinto "Invoices"; }
else { fileinto "Other"; }
