require "ereject";
if not exists "list-id" { ereject "no"; }
