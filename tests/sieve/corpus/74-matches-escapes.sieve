require "fileinto";
if header :matches "subject" "*\\[*\\]*" { fileinto "Brackets"; }
if header :matches "subject" "M??ting*" { fileinto "Q"; }
if header :matches "subject" "\\*" { fileinto "Star"; }
