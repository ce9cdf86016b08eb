"""SSRF guard for webhook and feed URLs: every resolved address must be public.

Checked when an endpoint or feed is added and again before every request, and that
request is pinned to the address that was checked (`pin`): DNS may answer differently
between the check and the connection (rebinding), so we never let it resolve twice.

IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated,
IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4
address inside them, so [::ffff:127.0.0.1] is loopback. The local-use NAT64 prefix
(64:ff9b:1::/48) and Teredo (2001::/32) hide or translate their IPv4 address in ways we
cannot check, so they are refused outright.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = [
    ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fd00:ec2::254/128", "100.100.100.200/32")
]
ALWAYS_BLOCKED = [
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "fc00::/7", "fe80::/10")
]
# IPv6 ranges whose last 32 bits are an IPv4 address the packet ends up at
EMBEDDED_V4 = [
    (ipaddress.ip_network(n), kind)
    for n, kind in (
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b::/96", "NAT64"),
        ("::/96", "IPv4-compatible"),
    )
]
REFUSED_V6 = [
    (ipaddress.ip_network(n), kind)
    for n, kind in (("64:ff9b:1::/48", "local-use NAT64"), ("2001::/32", "Teredo"))
]


class UnsafeURLError(ValueError):
    """A webhook or feed URL the service refuses to call, with the reason."""


class UnresolvedError(UnsafeURLError):
    """A host name DNS gives no address for: refused when a URL is added, but when
    sending to a stored one it may be a passing failure (a resolver down)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked IP to connect to


def _networks(allow: Iterable[str]) -> list[IPNetwork]:
    nets = []
    for cidr in allow:
        try:
            nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise UnsafeURLError(f"bad entry {cidr!r} in the webhook allow-list: {exc}") from exc
    return nets


def embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, and the name of the form, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.is_loopback or ip.is_unspecified:  # ::1 and :: sit inside ::/96 but are not IPv4
        return None
    for net, kind in EMBEDDED_V4:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), kind
    return None


def _refusal(ip: IPAddress, allow: list[IPNetwork]) -> str | None:
    """What kind of non-public address `ip` is ("a loopback address"), or None if allowed."""
    if any(ip in net for net in allow):
        return None
    for net, form in REFUSED_V6:
        if ip in net:
            return f"a {form} address"
    if any(ip in net for net in METADATA):
        return "a cloud metadata address"
    if any(ip in net for net in ALWAYS_BLOCKED) or not ip.is_global or ip.is_multicast:
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_private:
            return "a private address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_multicast:
            return "a multicast address"
        return "a reserved address"
    return None


def check_address(ip: IPAddress, allow: list[IPNetwork]) -> None:
    """Raise UnsafeURLError unless `ip` (or the IPv4 address inside it) is public or allowed."""
    if any(ip in net for net in allow):
        return
    inner = embedded_ipv4(ip)
    if inner is not None:
        v4, form = inner
        reason = _refusal(v4, allow)
        what = f"{ip} is the {form} form of {v4}, {reason}"
    else:
        reason = _refusal(ip, allow)
        what = f"{ip} is {reason}"
    if reason is not None:
        raise UnsafeURLError(f"{what}; the service only calls public addresses")


def _resolve(host: str, port: int, resolve) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name, not an address literal
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnresolvedError(f"cannot resolve {host}: {exc}") from exc
    except UnicodeError as exc:
        raise UnsafeURLError(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UnresolvedError(f"{host} resolves to no address")
    return addresses


def check_form(url: str, *, allow_http: bool = False) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL the service may call, judged by its form alone (no DNS)."""
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
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"bad port in the URL: {exc}") from exc
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    elif not 1 <= port <= 65535:
        raise UnsafeURLError(f"bad port in the URL: {port} (a port is 1 to 65535)")
    return parts.scheme, host, port


def checked_addresses(
    host: str, port: int, *, allow_networks: Iterable[str] = (), resolve=None
) -> list[str]:
    """Every address `host` resolves to, each one checked; raises if any is not public.

    Blocking (a DNS lookup): call it in a thread from async code."""
    allow = _networks(allow_networks)
    addresses = _resolve(host, port, resolve or socket.getaddrinfo)
    for ip in addresses:  # every address must pass, or rebinding picks the bad one
        check_address(ip, allow)
    return [str(ip) for ip in addresses]


def check_url(
    url: str, *, allow_http: bool = False, allow_networks: Iterable[str] = (), resolve=None
) -> Target:
    """Validate scheme and host and resolve it; returns the address to connect to."""
    scheme, host, port = check_form(url, allow_http=allow_http)
    addresses = checked_addresses(host, port, allow_networks=allow_networks, resolve=resolve)
    return Target(scheme, host, port, addresses[0])


@dataclass(frozen=True)
class Pinned:
    """A request aimed at the checked address; Host, TLS SNI and certificate keep the name."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


def pin(url: str, target: Target) -> Pinned:
    """Rewrite `url` to connect to `target.address`, so no second DNS lookup can redirect it.

    httpx connects to the address in the URL; the Host header and the `sni_hostname`
    extension (used for SNI and for checking the certificate) keep the original name.
    """
    parts = urlsplit(url.strip())
    ip = f"[{target.address}]" if ":" in target.address else target.address
    netloc = f"{ip}:{parts.port}" if parts.port else ip
    try:
        named = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise UnsafeURLError(f"cannot call this URL: {exc}") from exc
    return Pinned(
        url=urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
        headers={"Host": named.netloc.decode("ascii")},
        extensions={"sni_hostname": named.raw_host.decode("ascii")},
    )
