"""Recipient statuses of a queue entry, in one place (the queue runner and `mailhouse queue`).

The store keeps them as strings (`store.api.QueueRecipient.status`); when the store offers
an enum for them, only these names change.
"""

from __future__ import annotations

PENDING = "pending"  # not tried yet
DEFERRED = "deferred"  # tried, failed temporarily: retried (RFC 5321 §4.5.4)
DELIVERED = "delivered"  # accepted by the next hop or filed locally
FAILED = "failed"  # failed permanently (or expired): bounced when asked for (RFC 3461)

OPEN = (PENDING, DEFERRED)  # statuses a delivery pass still works on
