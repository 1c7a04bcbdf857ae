"""The one keyed hash of a client address, shared by the consent ledger (members) and
the staff audit trail (staff): the same address gives the same hash in both, so an
investigation can match them, and nobody without the key can reverse one.

The key is ``LEDGER_HMAC_KEY`` (required in production: renotify.E002)."""

import hashlib
import hmac

from django.conf import settings


def ledger_key() -> bytes:
    if settings.LEDGER_HMAC_KEY:
        return settings.LEDGER_HMAC_KEY.encode()
    # Local runs only (production requires LEDGER_HMAC_KEY: renotify.E002).
    return hashlib.sha256(b"renotify.ledger:" + settings.SECRET_KEY.encode()).digest()


def hash_ip(ip: str | None) -> str:
    """A keyed hash of an IP address: comparable between records, not reversible without
    the key; blank for no address."""
    if not ip:
        return ""
    return hmac.new(ledger_key(), b"ip:" + ip.encode(), hashlib.sha256).hexdigest()
