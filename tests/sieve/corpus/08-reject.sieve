require "reject";
if header :contains "x-spam-score" "8" { reject "spam not wanted"; }
