"""Recipient statuses of a queue entry, for the queue runner and `mailhouse queue`.

The statuses are `store.api.QueueStatus`; this module names the groups the runner works with.
"""

from __future__ import annotations

from mailhouse.store.api import QueueStatus

PENDING = QueueStatus.PENDING  # not tried yet
DEFERRED = QueueStatus.DEFERRED  # tried, failed temporarily: retried (RFC 5321 §4.5.4)
DELIVERED = QueueStatus.DELIVERED  # accepted by the next hop or filed locally
FAILED = QueueStatus.FAILED  # failed permanently (or expired): bounced when asked for (RFC 3461)

OPEN = (PENDING, DEFERRED)  # statuses a delivery pass still works on
