require ["ihave", "fileinto"];
if ihave "fileinto" { fileinto "Have"; }
if ihave "x-nonexistent" { discard; }
