require ["duplicate", "fileinto"];
if duplicate :handle "a" :header "subject" :seconds 30 { fileinto "Seen"; }
if not duplicate :uniqueid "abc" :last { fileinto "FirstTime"; }
