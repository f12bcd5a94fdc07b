require "fileinto";
if header :contains "subject" "a" {
  fileinto "A";
  require "copy";
}
