require ["body", "fileinto"];
if body :text :contains "invoice" { fileinto "BodyInvoice"; }
if body :contains "room 42" { fileinto "Room"; }
