require "enotify";
notify "xmpp:alice@example.org";
