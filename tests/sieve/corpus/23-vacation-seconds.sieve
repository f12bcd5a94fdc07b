require ["vacation", "vacation-seconds"];
if not exists "list-id" { vacation :seconds 3600 :handle "h1" "Back soon."; }
