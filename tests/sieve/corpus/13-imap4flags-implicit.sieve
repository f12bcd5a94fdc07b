require "imap4flags";
if header :contains "subject" "patch" { addflag "$Patch"; }
