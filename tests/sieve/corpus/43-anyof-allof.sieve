require "fileinto";
if anyof (header :contains "from" "frank", allof (exists "cc", size :over 500)) { fileinto "Combo"; }
