if address :is "to" "bob@example.com" { redirect "bob@elsewhere.example"; }
