"""Spam scoring with named rules that explain themselves (issue 14 §3-§5)."""
