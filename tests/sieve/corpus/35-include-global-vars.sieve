require ["include", "variables"];
global "folder";
set "folder" "Global.Box";
include :global "tofolder";
