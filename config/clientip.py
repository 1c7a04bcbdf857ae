"""The client's address: the TCP peer, or what the trusted proxies in front of us saw.

Behind a load balancer every request comes from the balancer's address, so counting
and hashing that address would make one client of every member. The proxies are named
in ``RENOTIFY_TRUSTED_PROXIES``:

- empty (the default): no proxy is trusted; the client is the TCP peer and any
  ``X-Forwarded-For`` is ignored;
- a number N: N proxies stand in front of the app and it cannot be reached past them;
  the client is the address the outermost of them saw (the Nth entry of
  ``X-Forwarded-For`` from the right, each proxy appending its own peer);
- comma-separated IPs or CIDRs, one per proxy hop, outermost first: the TCP peer must be
  in the last; the hops before it must appear, in order, at the right end of
  ``X-Forwarded-For``; the entry left of them is the client. A request from anywhere
  else is taken at its TCP peer, whatever it claims.

django-ipware reads the header (ports, brackets, IPv6, RFC 7239 forms) and picks the
entry; we add only the check that the peer itself is the innermost trusted proxy, since
ipware looks at headers alone.
"""

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from ipware import get_client_ip

FORWARDED_HEADER = "HTTP_X_FORWARDED_FOR"


@dataclass(frozen=True)
class TrustedProxies:
    """``count`` proxy hops in front of the app; ``hops`` their networks, outermost
    first, or empty when only the count is known."""

    count: int
    hops: tuple[str, ...] = ()

    def peer_trusted(self, peer: str | None) -> bool:
        if not self.count:
            return False
        if not self.hops:
            return True  # a count says every request comes through the proxies
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        innermost = ipaddress.ip_network(self.hops[-1], strict=False)
        return address.version == innermost.version and address in innermost


@lru_cache(maxsize=8)
def trusted_proxies_parse(value: str) -> TrustedProxies:
    """ "" -> none; "2" -> two hops; "203.0.113.0/24, 10.0.0.5" -> those two hops."""
    value = value.strip()
    if not value:
        return TrustedProxies(0)
    if value.isdigit():
        return TrustedProxies(int(value))
    hops = tuple(hop.strip() for hop in value.split(","))
    for hop in hops:
        try:
            ipaddress.ip_network(hop, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"RENOTIFY_TRUSTED_PROXIES: {hop!r} is not an IP address or network"
                " (expected a number of proxies, or IPs/CIDRs separated by commas)"
            ) from None
    return TrustedProxies(len(hops), hops)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as the outermost trusted proxy saw it, else the TCP peer."""
    peer = request.META.get("REMOTE_ADDR")
    proxies = trusted_proxies_parse(settings.RENOTIFY_TRUSTED_PROXIES)
    if not proxies.peer_trusted(peer):
        return peer
    # The peer is the innermost proxy; the other hops are the header's last entries.
    ip, _routable = get_client_ip(
        request,
        proxy_count=proxies.count - 1,
        proxy_trusted_ips=list(proxies.hops[:-1]) or None,
        request_header_order=[FORWARDED_HEADER],
        strict=False,  # a client may send its own entries on the left: not ours to judge
    )
    # No usable header from a trusted proxy: the proxy's own address, as without one.
    return ip or peer
