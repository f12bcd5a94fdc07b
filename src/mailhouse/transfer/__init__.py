"""Moving mail in: `mailhouse import` from Maildir (Dovecot, Maildir++), mbox and IMAP (issue 18 §1).

One module per source (`maildir.py`, `mbox.py`, `imapsource.py`), each a synchronous
`importer.Source` run in a worker thread; `importer.py` maps folders, skips what an earlier run
imported, batches messages into the store's normal append path and keeps the report.
"""
