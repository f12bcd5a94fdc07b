require "fileinto";
# comment
/* multi
 line */
if true {
  fileinto "A";
} elsif nosuchtest { keep; }
