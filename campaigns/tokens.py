"""Signed tokens for the links in notice emails. ``campaigns`` owns their format.

A token carries opaque ids only (never an email address), is signed with a salt
per use (so a notice link cannot be replayed as an unsubscribe), and never
expires: objecting must stay possible after any deadline. Rotating SECRET_KEY
keeps old links working while the old key is in SECRET_KEY_FALLBACKS.
"""

from django.conf import settings
from django.core import signing

NOTICE_SALT = "renotify.notice"
UNSUBSCRIBE_SALT = "renotify.unsubscribe"
MEMBER_SALT = "renotify.member"

NOTICE_PATH = "/n/"
UNSUBSCRIBE_PATH = "/u/"
PREFERENCES_PATH = "/p/"


class BadToken(Exception):
    """Tampered, truncated or foreign token: callers answer with a 400 page."""


def _dump(value: int, salt: str) -> str:
    return signing.dumps(value, salt=salt, compress=False)


def _load(token: str, salt: str) -> int:
    try:
        value = signing.loads(token, salt=salt)
    except (signing.BadSignature, ValueError, UnicodeDecodeError) as exc:
        raise BadToken("invalid token") from exc
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadToken("invalid token")
    return value


def notice_token(delivery_id: int) -> str:
    return _dump(delivery_id, NOTICE_SALT)


def unsubscribe_token(delivery_id: int) -> str:
    return _dump(delivery_id, UNSUBSCRIBE_SALT)


def member_token(member_id: int) -> str:
    return _dump(member_id, MEMBER_SALT)


def delivery_from_notice_token(token: str) -> int:
    return _load(token, NOTICE_SALT)


def delivery_from_unsubscribe_token(token: str) -> int:
    return _load(token, UNSUBSCRIBE_SALT)


def member_from_token(token: str) -> int:
    return _load(token, MEMBER_SALT)


def notice_url(delivery_id: int) -> str:
    return f"{settings.SITE_URL}{NOTICE_PATH}{notice_token(delivery_id)}/"


def unsubscribe_url(delivery_id: int) -> str:
    return f"{settings.SITE_URL}{UNSUBSCRIBE_PATH}{unsubscribe_token(delivery_id)}/"


def preferences_url(member_id: int) -> str:
    return f"{settings.SITE_URL}{PREFERENCES_PATH}{member_token(member_id)}/"
