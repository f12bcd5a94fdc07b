"""Abuse benchmark (issue 12 item 13): Mailhouse vs Postfix + Dovecot under 50 hostile connections.

``python -m bench.abuse.run --help``; see ``bench/README.md``.
"""
