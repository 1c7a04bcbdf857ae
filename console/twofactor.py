"""Staff two-factor sign-in (django-otp): one authenticator app (a TOTP device) and one
set of one-time recovery codes (a static device) per staff member.

- A TOTP device is created unconfirmed and confirmed only by a code computed from its
  secret: until then it verifies nothing, and starting again replaces it.
- Recovery codes are shown once, when made; making a new set deletes the old one. Each
  code is deleted as it is used (django-otp's static device), so it works exactly once.
- Every device throttles itself (django-otp's ``ThrottlingMixin``): after n wrong codes
  in a row the next is not even checked for 2^(n-1) seconds, across sessions.
- ``two_factor_mode`` reads ``RENOTIFY_STAFF_2FA`` at each call (config.checks refuses an
  unknown value): "required", "optional" or "sso".
"""

import re
from enum import StrEnum
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction
from django_otp import devices_for_user, verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import Action
from audit.services import staff_action_record, system_detail

RECOVERY_CODE_COUNT = 10
# What a person types: six digits is the app's code, anything else a recovery code
# (django-otp's are 8 base32 characters; spaces and case are forgiven).
TOTP_CODE = re.compile(r"\d{6}")
DEVICE_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"


class TwoFactorMode(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    SSO = "sso"


def two_factor_mode() -> TwoFactorMode:
    return TwoFactorMode(settings.RENOTIFY_STAFF_2FA)


def two_factor_enabled(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """A confirmed authenticator app: signing in then needs its code (or a recovery code)."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


def session_verified(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """This request's session passed the code step: OTPMiddleware gives its user the
    device that verified it (``django_otp.login``), or None."""
    return getattr(user, "otp_device", None) is not None


def totp_device_pending(*, user: AbstractBaseUser) -> Any:
    """The unconfirmed authenticator app being set up (a new secret when none is)."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def totp_device_confirm(*, user: AbstractBaseUser, token: str) -> Any | None:
    """Confirm the pending authenticator app with a code from it; it replaces the one
    confirmed before, if any. None: the code was wrong (counted by the throttle)."""
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update().filter(user_id=user.pk, confirmed=False).first()
        )
        if device is None or not device.verify_token(_clean(token)):
            return None
        replaced, _ = TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        staff_action_record(
            by=_staff(user), action=Action.TWO_FACTOR_SETUP, detail={"replaced": bool(replaced)}
        )
    return device


def recovery_codes_renew(*, user: AbstractBaseUser) -> list[str]:
    """A new set of one-time recovery codes; the old set stops working."""
    with transaction.atomic():
        StaticDevice.objects.filter(user_id=user.pk).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
        staff_action_record(
            by=_staff(user), action=Action.TWO_FACTOR_RECOVERY_CODES, detail={"codes": len(codes)}
        )
    return codes


def recovery_codes_left(*, user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user_id=user.pk).count()


def two_factor_check(*, user: AbstractBaseUser, token: str) -> Any | None:
    """The device that accepts ``token`` (the app's six digits, or a recovery code), or
    None. Checked against the one device it can be for, under that device's throttle."""
    token = _clean(token)
    model = TOTPDevice if TOTP_CODE.fullmatch(token) else StaticDevice
    accepted = next(
        (
            verify_token(user, device.persistent_id, token)
            for device in devices_for_user(user)
            if isinstance(device, model)
        ),
        None,
    )
    if accepted is None:
        # The password was right: a wrong second factor is a failed sign-in too.
        staff_action_record(
            by=_staff(user), action=Action.LOGIN_FAILED, detail={"step": "second factor"}
        )
    return accepted


def two_factor_reset(*, user: AbstractBaseUser) -> int:
    """Remove every second factor of ``user`` (a lost phone): the next sign-in asks
    them to set up a new one. Returns how many devices went."""
    with transaction.atomic():
        apps = TOTPDevice.objects.filter(user_id=user.pk)
        codes = StaticDevice.objects.filter(user_id=user.pk)
        gone = apps.count() + codes.count()
        apps.delete()
        codes.delete()
        staff_action_record(
            by=None,
            action=Action.TWO_FACTOR_RESET,
            target=user,
            detail={"devices": gone, **system_detail()},
        )
    return gone


def _staff(user: AbstractBaseUser) -> User:
    """The audit trail's ``by``: staff are Django's own users here."""
    return cast(User, user)


def throttled_until(*, user: AbstractBaseUser) -> Any | None:
    """When the next code will be checked again, if every device is waiting out wrong
    codes (None: a code can be tried now)."""
    waits = []
    for device in devices_for_user(user):
        allowed, details = device.verify_is_allowed()
        if allowed:
            return None
        waits.append(details.get("locked_until"))
    known = [w for w in waits if w is not None]
    return min(known) if known else None


def _clean(token: str) -> str:
    return re.sub(r"[\s-]", "", token).lower()
