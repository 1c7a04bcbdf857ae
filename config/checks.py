"""System checks that keep production from starting with local-only or weak secrets.

Django runs them before `runserver`, `migrate` and `check`; `wsgi.py`, `asgi.py`,
Celery workers and beat run them too (``refuse_to_start_on_errors``), so a
production process with a missing, empty or weak secret stops instead of running
insecurely.
"""

from django.conf import settings
from django.core import checks
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

TAG = "renotify"
# 32 random bytes, as the hint's command makes them (43 URL-safe characters).
LEDGER_KEY_MIN_LENGTH = 43
LEDGER_KEY_MIN_UNIQUE_CHARACTERS = 16
GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe({}))'"


@checks.register(TAG)
def production_secrets(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    problems = [
        _secret_key_problem(settings.SECRET_KEY_FROM_ENV),
        _ledger_key_problem(settings.LEDGER_HMAC_KEY),
        _webhook_secret_problem(settings.ANYMAIL.get("WEBHOOK_SECRET")),
    ]
    return [problem for problem in problems if problem is not None]


def _secret_key_problem(value: str | None) -> checks.Error | None:
    hint = (
        "Production (DEBUG off) needs a real secret of at least "
        f"{SECRET_KEY_MIN_LENGTH} characters; {GENERATE.format(50)} "
        "(or DEBUG=1 for local use: a key is then generated under var/)."
    )
    if value is None:
        return checks.Error(
            "SECRET_KEY is not set in the environment.", hint=hint, id="renotify.E001"
        )
    if not value:
        return checks.Error("SECRET_KEY is empty.", hint=hint, id="renotify.E001")
    if not _strong(value, SECRET_KEY_MIN_LENGTH, SECRET_KEY_MIN_UNIQUE_CHARACTERS) or (
        value.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        return checks.Error("SECRET_KEY is too weak.", hint=hint, id="renotify.E001")
    return None


def _ledger_key_problem(value: str) -> checks.Error | None:
    hint = (
        "The consent ledger's hash chain is keyed by it and must never change once events "
        f"exist: at least 32 random bytes; {GENERATE.format(32)}, and keep it with your "
        "secrets and backups."
    )
    if not value:
        return checks.Error(
            "LEDGER_HMAC_KEY is not set in the environment.", hint=hint, id="renotify.E002"
        )
    if not _strong(value, LEDGER_KEY_MIN_LENGTH, LEDGER_KEY_MIN_UNIQUE_CHARACTERS):
        return checks.Error("LEDGER_HMAC_KEY is too weak.", hint=hint, id="renotify.E002")
    return None


def _webhook_secret_problem(value: list[str] | None) -> checks.Error | None:
    if value:
        return None
    return checks.Error(
        "ANYMAIL_WEBHOOK_SECRET is not set in the environment.",
        hint="ESP tracking webhooks change delivery state and suppress addresses: "
        "set ANYMAIL_WEBHOOK_SECRET=user:password (comma-separated to rotate) and "
        "configure the same credentials at the ESP.",
        id="renotify.E003",
    )


def _strong(value: str, min_length: int, min_unique: int) -> bool:
    return len(value) >= min_length and len(set(value)) >= min_unique


@checks.register(TAG)
def trusted_proxies(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A proxy list that cannot be read would take every client for the proxy."""
    from config.clientip import trusted_proxies_parse

    try:
        trusted_proxies_parse(settings.RENOTIFY_TRUSTED_PROXIES)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="renotify.E020")]
    return []


RATE_SETTINGS = (
    "RENOTIFY_RATE_PER_TOKEN",
    "RENOTIFY_RATE_PER_IP",
    "RENOTIFY_API_RATE",
    "RENOTIFY_API_RATE_BAD_KEY",
)


@checks.register(TAG)
def rates(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A rate that cannot be read would fail every request it limits, at the first one."""
    from config.ratelimit import rate_parse

    errors: list[checks.CheckMessage] = []
    for name in RATE_SETTINGS:
        try:
            rate_parse(getattr(settings, name))
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(f"{name}: {exc}", id="renotify.E021"))
    return errors


def refuse_to_start_on_errors() -> None:
    """Raise when any Renotify check fails: called by the wsgi/asgi entry points, Celery
    workers and beat."""
    failed = [m for m in checks.run_checks(tags=[TAG]) if m.is_serious()]
    if failed:
        raise ImproperlyConfigured("; ".join(f"{m.id}: {m.msg} {m.hint}" for m in failed))


STAFF_2FA_MODES = ("required", "optional", "sso")


@checks.register(TAG)
def staff_two_factor(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A mode that cannot be read would either lock every staff member out or let a
    password alone in: refuse to start instead."""
    if settings.RENOTIFY_STAFF_2FA in STAFF_2FA_MODES:
        return []
    return [
        checks.Error(
            f"RENOTIFY_STAFF_2FA is {settings.RENOTIFY_STAFF_2FA!r}.",
            hint="Use one of: required (staff need a code from an authenticator app), "
            "optional (offered, not forced) or sso (never asked: only behind an identity "
            "provider that already demands a second factor).",
            id="renotify.E022",
        )
    ]
