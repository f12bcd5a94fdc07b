"""Spam filtering services: scoring with named rules that explain themselves (issue 14 §3-§5), the
per-user Bayes classifier, sender lists and training."""
