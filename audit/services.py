"""Recording what staff do: ``staff_action_record`` is the only writer of the trail.

Invariants:
- A service records in the transaction of the change it records, after its permission
  check and its own refusals: a refused or failed action records nothing, a done one
  always records (both commit or neither does).
- What is stored of the request: a keyed hash of the client's address
  (``config.hashing.hash_ip`` of ``config.clientip.client_ip``) and the path without
  its query string, so a member's link is never kept. Never a password or a secret.
- ``by=None`` is the system; services record it only where it matters (a role given
  by a command), never for beat's or the circuit breaker's own transitions.
"""

import sys
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import models

from audit.middleware import current_request
from audit.models import Action, StaffAction
from config.clientip import client_ip
from config.hashing import hash_ip

LABEL_MAX = StaffAction._meta.get_field("target_label").max_length or 300
PATH_MAX = StaffAction._meta.get_field("path").max_length or 300


def staff_action_record(
    *,
    by: User | None,
    action: Action | str,
    target: models.Model | None = None,
    changes: Mapping[str, tuple[Any, Any] | list[Any]] | None = None,
    detail: Mapping[str, Any] | None = None,
    username: str | None = None,
) -> StaffAction:
    """Append one entry. ``changes`` maps a field to (old, new); values are stored as
    JSON (a record as its name, a date as ISO text). ``username`` only where there is no
    user to take it from (a failed sign-in)."""
    request = current_request()
    return StaffAction.objects.create(
        by=by,
        username=username if username is not None else (by.get_username() if by else ""),
        action=Action(action),
        **_target_fields(target),
        changes={name: [plain(old), plain(new)] for name, (old, new) in (changes or {}).items()},
        detail={key: plain(value) for key, value in (detail or {}).items()},
        ip_hash=hash_ip(client_ip(request)) if request is not None else "",
        path=request.path[:PATH_MAX] if request is not None else "",
    )


def system_detail() -> dict[str, str]:
    """What ``detail`` says of an act with no request behind it: the command that did it."""
    argv = sys.argv
    if argv and argv[0].endswith("manage.py"):
        return {"via": " ".join(["manage.py", *argv[1:2]])}
    return {"via": "system"}


def _target_fields(target: models.Model | None) -> dict[str, str]:
    if target is None:
        return {}
    return {
        "target_type": target._meta.label_lower,
        "target_id": str(target.pk),
        "target_label": str(target)[:LABEL_MAX],
    }


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it, readably: a record by its name, dates as text."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
