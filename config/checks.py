"""System checks that keep production from starting with local-only secrets.

Django runs them before `runserver`, `migrate` and `check`; `wsgi.py`, `asgi.py`
and the Celery worker run them too (``refuse_to_start_on_errors``), so a
production process with a missing secret stops instead of running insecurely.
"""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

TAG = "renotify"


@checks.register(TAG)
def production_secrets(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    errors = []
    if not settings.SECRET_KEY_FROM_ENV:
        errors.append(
            checks.Error(
                "SECRET_KEY is not set in the environment.",
                hint="Production (DEBUG off) needs a real secret: set SECRET_KEY, or DEBUG=1 "
                "for local use (a key is then generated under var/).",
                id="renotify.E001",
            )
        )
    if not settings.LEDGER_HMAC_KEY:
        errors.append(
            checks.Error(
                "LEDGER_HMAC_KEY is not set in the environment.",
                hint="The consent ledger's hash chain is keyed by it and must never change "
                "once events exist; set a long random value and keep it with your secrets.",
                id="renotify.E002",
            )
        )
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        errors.append(
            checks.Error(
                "ANYMAIL_WEBHOOK_SECRET is not set in the environment.",
                hint="ESP tracking webhooks change delivery state and suppress addresses: "
                "set ANYMAIL_WEBHOOK_SECRET=user:password (comma-separated to rotate) and "
                "configure the same credentials at the ESP.",
                id="renotify.E003",
            )
        )
    return errors


@checks.register(TAG)
def trusted_proxies(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A proxy list that cannot be read would take every client for the proxy."""
    from config.clientip import trusted_proxies_parse

    try:
        trusted_proxies_parse(settings.RENOTIFY_TRUSTED_PROXIES)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="renotify.E020")]
    return []


def refuse_to_start_on_errors() -> None:
    """Raise when any Renotify check fails: called by the wsgi/asgi entry points and workers."""
    failed = [m for m in checks.run_checks(tags=[TAG]) if m.is_serious()]
    if failed:
        raise ImproperlyConfigured("; ".join(f"{m.id}: {m.msg} {m.hint}" for m in failed))
