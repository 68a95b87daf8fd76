"""How deliveries are signed, so receivers can check they come from this gateway and were not replayed.

``ftgw-signature: v1=<hex HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`` with the id and the Unix
timestamp in ``ftgw-webhook-id`` and ``ftgw-webhook-timestamp`` (the Standard Webhooks scheme, hex-encoded).
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(secret: str, delivery_id: str, timestamp: int, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, delivery_id, timestamp, body), header)
