keep;
keep;
fileinto "x;
keep;
