require ["variables", "fileinto"];
set :upperfirst "a" "hello";
set :length "n" "${a}";
if string :is "${a}${n}" "Hello5" { fileinto "Mod"; }
