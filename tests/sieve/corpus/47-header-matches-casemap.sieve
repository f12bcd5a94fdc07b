require "fileinto";
if header :matches "x-mailer" "GIT-*" { fileinto "Git"; }
if header :comparator "i;octet" :matches "x-mailer" "GIT-*" { fileinto "GitOctet"; }
