require ["variables", "fileinto"];
set :lower :upperfirst "n" "hELLO wORLD";
fileinto "${n}";
