require "fileinto";
# comment
/* multi
 line */
if header :contains "subject" "x" {
  fileinto "A";
} elsif nosuchtest { keep; }
