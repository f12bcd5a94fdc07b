require "enotify";
if header :contains "from" "carol" { notify :importance "1" :message "Mail from Carol" "mailto:bob@example.com"; }
