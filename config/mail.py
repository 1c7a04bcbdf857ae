"""Mail transport helpers: the embedded default backend, and opening a connection.

The embedded default backend writes one .eml file per message under var/outbox/.
Django's own file backend appends a whole connection's messages to one log
file; one file per message lets the staff outbox page list and open each one
as a member's mail client would.
"""

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from anymail.backends.base_requests import AnymailRequestsBackend
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_lock = threading.Lock()
_counter = 0


def outbox_dir() -> Path:
    path = Path(settings.EMAIL_FILE_PATH)
    path.mkdir(parents=True, exist_ok=True)
    return path


class OutboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        directory = outbox_dir()
        for message in email_messages:
            data = message.message().as_bytes(linesep="\r\n")
            (directory / _file_name(message)).write_bytes(data)
        return len(email_messages)


def _file_name(message) -> str:
    global _counter
    with _lock:
        _counter += 1
        count = _counter
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    message_id = _SAFE.sub("_", message.extra_headers.get("Message-ID", "")).strip("_")[:80]
    return f"{stamp}-{count:06d}-{message_id or 'message'}.eml"


# --- Opening a connection ----------------------------------------------------------


def connection_open(connection: BaseEmailBackend) -> None:
    """Open ``connection`` for a run of messages to one ESP.

    An HTTP (django-anymail requests) backend gets a session that reads the proxy and
    CA settings from the environment once per ESP origin instead of on every message:
    requests scans every environment variable for each POST, a large share of a
    sender's time per message (bench/send_loop.py --profile). What it reads is the
    same, so HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE work as before."""
    connection.open()
    if isinstance(connection, AnymailRequestsBackend) and connection.session is not None:
        session = connection.session
        session.merge_environment_settings = EnvironmentOnce(session.merge_environment_settings)


class EnvironmentOnce:
    """A requests session's ``merge_environment_settings``, remembered per origin.

    Only calls that pass nothing of their own (no proxies, stream, verify or cert: how
    django-anymail posts) are remembered; any other call is answered afresh."""

    def __init__(self, merge) -> None:
        self.merge = merge
        self.by_origin: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, url, proxies, stream, verify, cert) -> dict[str, Any]:
        if proxies or stream is not None or verify is not None or cert is not None:
            return self.merge(url, proxies, stream, verify, cert)
        origin = urlsplit(url)[:2]
        if origin not in self.by_origin:
            self.by_origin[origin] = self.merge(url, {}, None, None, None)
        merged = self.by_origin[origin]
        # A copy each time: requests may add to the proxies it is given.
        return {**merged, "proxies": dict(merged["proxies"])}
