"""The embedded default email backend: one .eml file per message under var/outbox/.

Django's own file backend appends a whole connection's messages to one log
file; one file per message lets the staff outbox page list and open each one
as a member's mail client would.
"""

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

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
