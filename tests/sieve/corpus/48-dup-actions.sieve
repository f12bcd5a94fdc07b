require "fileinto";
fileinto "Same";
fileinto "Same";
keep;
keep;
redirect "a@example.org";
redirect "a@example.org";
