require ["fileinto", "copy"];
fileinto :copy "INBOX";
keep;
fileinto :copy "A";
fileinto "A";
