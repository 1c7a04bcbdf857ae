"""Member links never reach a log line.

A notice, unsubscribe or preference link (``/n/<token>/``, ``/u/<token>/``,
``/p/<token>/``) never expires and acts for its member, so a log that held one would
hand that member's choices to whoever reads the log. Django's request loggers
("Not Found: /n/...", runserver's request lines) and gunicorn's access and error logs
all pass through ``MemberLinkFilter``, installed on every handler in ``LOGGING`` and on
gunicorn's loggers by ``config/gunicorn.py``.
"""

import logging
import re

# The link prefixes of campaigns.tokens (a test keeps the two in step), then the token:
# anywhere in a line, so also inside a full URL, a referer or a query string.
MEMBER_LINK = re.compile(r"(/[nup]/)[^/\s?#\"'<>]+")
REDACTED = "[redacted]"


def member_links_redact(text: str) -> str:
    return MEMBER_LINK.sub(rf"\g<1>{REDACTED}", text)


class MemberLinkFilter(logging.Filter):
    """Rewrites a record's message (and its traceback) with member links redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format: logging reports it, unchanged
            return True
        redacted = member_links_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = member_links_redact(record.exc_text)
        if record.stack_info:
            record.stack_info = member_links_redact(record.stack_info)
        return True
