require ["include", "fileinto"];
include :global "returner";
fileinto "AfterReturn";
