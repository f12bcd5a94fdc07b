require ["vacation", "fileinto"];
vacation "away";
fileinto "Later";
