require "copy";
redirect "one@example.org";
redirect :copy "two@example.org";
keep;
