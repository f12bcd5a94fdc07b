require ["variables", "fileinto"];
set "k" "meet";
if header :contains "subject" "${k}" { fileinto "Var"; }
set :quotewildcard "w" "*";
if header :matches "subject" "${w}" { fileinto "LiteralStar"; }
