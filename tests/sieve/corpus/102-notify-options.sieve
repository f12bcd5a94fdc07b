require ["enotify", "variables"];
if header :matches "subject" "*" { notify :from "bob@example.com" :options ["x-opt=1"] :message "S: ${1}" "mailto:alice@example.org"; }
