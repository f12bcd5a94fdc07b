require ["variables", "include", "fileinto"];
global "g";
set "global.g" "G1";
set "l" "L1";
fileinto "${g}.${global.g}.${l}";
