require "fileinto";
if exists "SUBJECT" { fileinto "Up"; }
if not exists ["subject", "list-id"] { fileinto "NotBoth"; }
