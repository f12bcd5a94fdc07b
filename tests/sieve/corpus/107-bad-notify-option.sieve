require "enotify";
keep;
notify :options ["nonsense"] "mailto:alice@example.org";
