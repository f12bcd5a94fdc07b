require "fileinto";
if address :all :is "from" "Frank <frank@dev.example.org>" { fileinto "Display"; }
if address :is :all "to" "team@example.com" { fileinto "Team"; }
