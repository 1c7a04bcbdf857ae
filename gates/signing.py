"""Signing a consumer confirmation: what was confirmed, by whom, when, up to which
cursor, bound together so that none of it can be changed afterwards unnoticed.

The signature is an HMAC-SHA256 over the canonical JSON (sorted keys, no spaces) of
``confirmation_content``, keyed by Django's ``salted_hmac`` from ``SECRET_KEY`` with
this module's salt. Anyone holding the key can recompute it; nobody without it can
make a row that verifies. A confirmation signed under a key since rotated no longer
verifies, and so no longer counts: the safe side (record a new one).
"""

import hmac
import json
from typing import Any

from django.utils.crypto import salted_hmac

from gates.models import ConsumerConfirmation

SALT = "renotify.gates.consumer-confirmation"


def confirmation_content(confirmation: ConsumerConfirmation) -> dict[str, Any]:
    gate = confirmation.gate
    return {
        "gate": gate.pk,
        "purpose": gate.purpose.slug,
        "jurisdiction": gate.jurisdiction,
        "by": confirmation.username,
        "at": confirmation.at.isoformat(),
        "statement": confirmation.statement,
        "cursor": confirmation.cursor,
    }


def confirmation_sign(confirmation: ConsumerConfirmation) -> str:
    canonical = json.dumps(
        confirmation_content(confirmation), sort_keys=True, separators=(",", ":")
    )
    return salted_hmac(SALT, canonical, algorithm="sha256").hexdigest()


def confirmation_verifies(confirmation: ConsumerConfirmation) -> bool:
    return hmac.compare_digest(confirmation.signature, confirmation_sign(confirmation))
