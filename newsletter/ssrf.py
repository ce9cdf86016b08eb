"""SSRF guard for webhook URLs: https only, and every resolved address must be public.

Checked when an endpoint is added and again at send time, where the connection is
pinned to the address that was checked (DNS may change in between).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

METADATA = [
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fd00:ec2::254/128", "100.100.100.200/32")
]
ALWAYS_BLOCKED = [
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "fc00::/7", "fe80::/10")
]


class UnsafeURLError(ValueError):
    """A webhook URL the service refuses to call, with the reason."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked IP to connect to


def _networks(allow: Iterable[str]) -> list[ipaddress._BaseNetwork]:
    nets = []
    for cidr in allow:
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise UnsafeURLError(f"bad entry {cidr!r} in the webhook allow-list: {exc}") from exc
    return nets


def check_address(ip: ipaddress._BaseAddress, allow: list[ipaddress._BaseNetwork]) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return
    if any(ip in net for net in METADATA):
        raise UnsafeURLError(f"{ip} is a cloud metadata address")
    if any(ip in net for net in ALWAYS_BLOCKED) or not ip.is_global or ip.is_multicast:
        kind = (
            "loopback"
            if ip.is_loopback
            else "private"
            if ip.is_private
            else "link-local"
            if ip.is_link_local
            else "multicast"
            if ip.is_multicast
            else "reserved"
        )
        raise UnsafeURLError(f"{ip} is a {kind} address; webhooks may only reach public addresses")


def _resolve(host: str, port: int, resolve) -> list[ipaddress._BaseAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name, not an address literal
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeURLError(f"{host} resolves to no address")
    return addresses


def check_url(
    url: str, *, allow_http: bool = False, allow_networks: Iterable[str] = (), resolve=None
) -> Target:
    """Validate scheme and host and resolve it; returns the address to connect to."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http"):
        raise UnsafeURLError("a webhook URL must start with https://")
    if parts.scheme == "http" and not allow_http:
        raise UnsafeURLError(
            "a webhook URL must use https (http is off: NEWSLETTER_WEBHOOK_ALLOW_HTTP)"
        )
    if parts.username or parts.password:
        raise UnsafeURLError("a webhook URL must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise UnsafeURLError("the webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURLError(f"bad port in webhook URL: {exc}") from exc
    allow = _networks(allow_networks)
    addresses = _resolve(host, port, resolve or socket.getaddrinfo)
    for ip in addresses:  # every address must pass, or rebinding picks the bad one
        check_address(ip, allow)
    return Target(parts.scheme, host, port, str(addresses[0]))
