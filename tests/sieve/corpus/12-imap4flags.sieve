require ["imap4flags", "fileinto"];
setflag "\\Seen";
addflag ["\\Flagged", "$Work"];
removeflag "\\Seen";
fileinto "Flagged";
