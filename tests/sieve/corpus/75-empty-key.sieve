require "fileinto";
if header :contains "subject" "" { fileinto "HasSubject"; }
if header :contains "x-nope" "" { fileinto "Nope"; }
