"""How many requests an API client may make: its own rate (``ApiClient.rate``), else
``RENOTIFY_API_RATE``; and how many wrong keys one address may send
(``RENOTIFY_API_RATE_BAD_KEY``).

Windows are fixed and counted on the shared cache (``config.ratelimit``: one round trip
per request). A cache that cannot be reached limits nothing, as on the notice pages: an
unlimited minute is better than refusing every platform call because of a counter. A
valid key is never refused for its address (many systems may call from one NAT), and
a wrong one never counts against a client.
"""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from api.models import ApiClient
from config.ratelimit import Counted, Limit, client_network, limits_count, rate_parse

logger = logging.getLogger(__name__)


def client_rate(*, client: ApiClient) -> str:
    """The client's own rate, or the default for a blank or unreadable one (logged: the
    admin validates rates, so an unreadable one was written around it)."""
    if not client.rate:
        return settings.RENOTIFY_API_RATE
    try:
        rate_parse(client.rate)
    except ImproperlyConfigured:
        logger.warning("API client %s has an unreadable rate; the default applies", client.pk)
        return settings.RENOTIFY_API_RATE
    return client.rate


def client_request_count(*, client: ApiClient) -> Counted | None:
    """Count one request of ``client``; where its limit now stands (None: not counted)."""
    counted = limits_count([Limit("api-client", str(client.pk), client_rate(client=client))])
    return counted[0] if counted else None


def bad_key_count(*, ip: str | None) -> Counted | None:
    """Count one wrong key from ``ip``'s network; where that limit now stands."""
    rate = settings.RENOTIFY_API_RATE_BAD_KEY
    counted = limits_count([Limit("api-bad-key", client_network(ip), rate)])
    return counted[0] if counted else None
