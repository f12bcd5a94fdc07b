require "fileinto";
if size :over 1K { fileinto "Big"; } elsif size :under 500 { fileinto "Small"; }
