"""API clients: made and revoked by staff (``api.manage_apiclient``), found by key.

A key is ``rn_<prefix>_<secret>``: the prefix finds the client, the SHA-256 of the
whole key is compared in constant time. Only the hash is stored, so the key is shown
once, to whoever made the client.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts.permissions import permission_require
from api.models import ApiClient, Scope
from audit.models import Action
from audit.services import staff_action_record
from config.ratelimit import rate_parse

MANAGE = "api.manage_apiclient"
KEY_START = "rn_"
# Last use is written at most this often per client, not on every request.
LAST_USED_EVERY = timedelta(minutes=1)


class UnknownScope(ValueError):
    """A client was asked for a scope the API does not have: nothing is made."""


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_client_create(
    *, name: str, scopes: list[str], by: User | None, rate: str = ""
) -> tuple[ApiClient, str]:
    """A new client with ``scopes`` and ``rate`` (blank: the default), and its key (shown
    once: only its hash is kept). ImproperlyConfigured for a rate not like "600/m"."""
    permission_require(by=by, perm=MANAGE)
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise UnknownScope(f"unknown scopes: {', '.join(unknown)}")
    if rate:
        rate_parse(rate)
    prefix = secrets.token_hex(6)
    key = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        client = ApiClient.objects.create(
            name=name,
            key_prefix=prefix,
            key_hash=_key_hash(key),
            scopes=sorted(set(scopes)),
            created_by=by,
            rate=rate,
        )
        if by is not None:  # the key's prefix finds it; the key itself is never kept
            detail = {"scopes": client.scopes, "rate": rate, "key_prefix": prefix}
            staff_action_record(
                by=by, action=Action.API_CLIENT_CREATE, target=client, detail=detail
            )
    return client, key


def api_client_revoke(*, client: ApiClient, by: User | None) -> bool:
    """Revoke ``client``: its key is refused from now on. False if it already was."""
    permission_require(by=by, perm=MANAGE)
    with transaction.atomic():
        revoked = bool(
            ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
        )
        if revoked and by is not None:
            staff_action_record(by=by, action=Action.API_CLIENT_REVOKE, target=client)
    return revoked


def api_client_for_key(key: str) -> ApiClient | None:
    """The live client ``key`` belongs to (its last use noted), or None."""
    parts = key.split("_")
    if len(parts) < 3 or not key.startswith(KEY_START):
        return None
    client = ApiClient.objects.filter(key_prefix=parts[1], revoked_at__isnull=True).first()
    if client is None or not hmac.compare_digest(client.key_hash, _key_hash(key)):
        return None
    _last_use_note(client)
    return client


def _last_use_note(client: ApiClient) -> None:
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at >= LAST_USED_EVERY:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
