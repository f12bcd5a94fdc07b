require ["ihave", "fileinto"];
if header :contains "subject" "meeting" {
  error "meetings are not allowed";
}
fileinto "After";
