"""Spam filtering services: scoring rules, the per-user Bayes classifier, sender lists, training."""
