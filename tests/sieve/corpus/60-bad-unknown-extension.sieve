require "x-unknown-extension";
keep;
