"""Reports that arrive for hosted domains: DMARC aggregate (RFC 7489 §7.2) and TLS-RPT (RFC 8460).

`archive.py` finds the report in a message and unpacks it within limits, `dmarc_in.py` and
`tlsrpt_in.py` parse the two formats, `intake.py` is what local delivery calls, `views.py`
turns the stored summaries into the tables of `mailhouse report` and the admin page.
"""
