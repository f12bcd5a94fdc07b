require "fileinto";
keep;

else { keep; }
