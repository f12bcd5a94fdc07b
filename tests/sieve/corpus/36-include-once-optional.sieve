require ["include"];
include :once "lists";
include :once "lists";
include :optional "missing";
