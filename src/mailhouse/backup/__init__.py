"""Online backup, verification and restore of a store (`snapshot.py`, `restore.py`); export (`export.py`)."""
