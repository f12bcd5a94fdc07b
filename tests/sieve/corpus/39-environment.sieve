require ["environment", "fileinto"];
if environment :matches "name" "*" { fileinto "Env"; }
