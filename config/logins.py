"""Staff login throttling (django-axes): the client address failures are counted by."""

from django.http import HttpRequest


def login_client_ip(request: HttpRequest) -> str | None:
    """The TCP peer's address, which a client cannot choose (unlike ``X-Forwarded-For``,
    which a client can vary at will to dodge a lockout). Behind a proxy the peer is the
    proxy, so the lockout then works per username alone; a resolver that trusts only the
    configured proxies (``RENOTIFY_TRUSTED_PROXIES``) belongs here once there is one."""
    return request.META.get("REMOTE_ADDR")
