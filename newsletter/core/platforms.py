"""The chat platforms, one entry each: what a message may hold, how a request is signed,
the error codes hidden in an HTTP 200 answer, how fast one webhook may be sent to, and
whether the platform takes a signing secret.

Everything else is derived from `PLATFORMS`: the card checks, the API's platform enum,
the CLI help, endpoint validation and per-endpoint pacing. Adding a platform is one entry
here plus its two templates, `templates/webhooks/<name>.alert.json.j2` and
`<name>.digest.json.j2`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlsplit


@dataclass
class Outgoing:
    """One request as it leaves: a signer may change the URL, the body or the headers."""

    url: str
    body: bytes  # compact UTF-8 JSON of the card
    headers: dict[str, str]


@dataclass(frozen=True)
class BodyCodes:
    """A platform that answers HTTP 200 with an error code in the JSON body."""

    field: str  # the JSON field holding the code (0 means accepted)
    temporary: frozenset[int]  # try again later
    gone: frozenset[int] = frozenset()  # the webhook no longer exists: disable the endpoint
    retry_after: float = 60.0  # seconds to wait after a temporary code


@dataclass(frozen=True)
class Platform:
    name: str
    label: str  # as people write it
    check: Callable[[dict], str | None]  # what is wrong with a card, or None
    # messages per window (seconds) one webhook accepts; None: no documented limit
    rate: tuple[int, float] | None = None
    # signs (or stamps) a request; called for every request, secret or not
    sign: Callable[[Outgoing, str | None, str, float], None] | None = None
    signed: bool = False  # takes a signing secret
    secret_prefix: str | None = None  # a secret must start with this
    secret_format: str = ""  # what such a secret is, for error messages
    new_secret: Callable[[], str] | None = None  # generated when none is given
    body_codes: BodyCodes | None = None
    # answers (the whole body of an HTTP 4xx) that mean the webhook is gone
    gone_answers: frozenset[str] = field(default_factory=frozenset)


def payload_size(payload: Any) -> int:
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))


# --- card checks: the limits each platform documents, with some margin -----------------------


def _slack(p: dict) -> str | None:
    blocks = p.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return "Slack payload needs a non-empty blocks list"
    if len(blocks) > 50:
        return f"Slack allows 50 blocks, this has {len(blocks)}"
    for b in blocks:
        text = (b.get("text") or {}).get("text", "") if isinstance(b, dict) else ""
        limit = 150 if b.get("type") == "header" else 3000
        if len(text) > limit:
            return f"Slack {b.get('type')} text is {len(text)} characters (limit {limit})"
    if len(json.dumps(blocks, ensure_ascii=False)) > 12_000:
        return "Slack blocks exceed about 12,000 characters in all"
    return None


def _discord(p: dict) -> str | None:
    embeds = p.get("embeds", [])
    if len(p.get("content") or "") > 2000:
        return "Discord content is over 2000 characters"
    if len(embeds) > 10:
        return f"Discord allows 10 embeds, this has {len(embeds)}"
    total = 0
    for e in embeds:
        title, desc = e.get("title") or "", e.get("description") or ""
        footer = (e.get("footer") or {}).get("text") or ""
        if len(title) > 256 or len(desc) > 4096 or len(footer) > 2048:
            return "a Discord embed field is over its limit"
        total += len(title) + len(desc) + len(footer)
    if total > 6000:
        return f"Discord embeds hold {total} characters (limit 6000)"
    return None


def _teams(p: dict) -> str | None:
    try:
        (att,) = p["attachments"]
        card = att["content"]
    except (KeyError, TypeError, ValueError):
        return "Teams payload needs a message envelope with one attachment"
    if (
        p.get("type") != "message"
        or att.get("contentType") != "application/vnd.microsoft.card.adaptive"
    ):
        return "Teams envelope must be type=message with an Adaptive Card attachment"
    if (
        card.get("type") != "AdaptiveCard"
        or card.get("version") != "1.4"
        or not isinstance(card.get("body"), list)
    ):
        return "Teams card must be an AdaptiveCard, version 1.4, with a body"
    if payload_size(p) > 26_000:
        return "Teams message is over 26 KB (the limit is 28 KB)"
    return None


def _feishu(p: dict) -> str | None:
    if p.get("msg_type") != "interactive" or "card" not in p:
        return "Feishu payload must be msg_type=interactive with a card"
    return "Feishu body is over 18 KB (the limit is 20 KB)" if payload_size(p) > 18_000 else None


def _dingtalk(p: dict) -> str | None:
    if p.get("msgtype") != "markdown" or not (p.get("markdown") or {}).get("text"):
        return "DingTalk payload must be msgtype=markdown with text"
    return "DingTalk message is over 19,000 bytes" if payload_size(p) > 19_000 else None


def _wecom(p: dict) -> str | None:
    content = (p.get("markdown") or {}).get("content")
    if p.get("msgtype") != "markdown" or not content:
        return "WeCom payload must be msgtype=markdown with content"
    n = len(content.encode("utf-8"))
    return f"WeCom markdown is {n} bytes (limit 4096)" if n > 4096 else None


def _generic(p: dict) -> str | None:
    if not isinstance(p.get("type"), str) or "data" not in p:
        return "generic payload needs type and data"
    return "generic payload is over 64 KB" if payload_size(p) > 65_536 else None


# --- signing, as each platform documents it ---------------------------------------------------


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu/Lark: the string "<ts>\\n<secret>" is the HMAC key; the message is empty."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: HMAC-SHA256(key=secret, msg="<ts_ms>\\n<secret>"), base64, then URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode())


def standard_webhooks_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1: HMAC-SHA256 over "<id>.<ts>.<body>" with the base64 key of whsec_."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def new_standard_webhooks_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add_json_fields(body: bytes, fields: dict[str, str]) -> bytes:
    """`body` (a compact JSON object) with `fields` set, without parsing it again when they
    are new keys: the card is encoded once and shared by every endpoint that gets it."""
    extra = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if body.endswith(b"}") and body != b"{}" and not any(f'"{k}"'.encode() in body for k in fields):
        return body[:-1] + b"," + extra[1:]
    data = json.loads(body)
    data.update(fields)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _sign_feishu(out: Outgoing, secret: str | None, msg_id: str, now: float) -> None:
    if secret:
        ts = int(now)
        out.body = add_json_fields(
            out.body, {"timestamp": str(ts), "sign": feishu_sign(secret, ts)}
        )


def _sign_dingtalk(out: Outgoing, secret: str | None, msg_id: str, now: float) -> None:
    if secret:
        ts_ms = int(now * 1000)
        sep = "&" if urlsplit(out.url).query else "?"
        out.url = f"{out.url}{sep}timestamp={ts_ms}&sign={dingtalk_sign(secret, ts_ms)}"


def _sign_generic(out: Outgoing, secret: str | None, msg_id: str, now: float) -> None:
    ts = int(now)
    out.headers["webhook-id"] = msg_id
    out.headers["webhook-timestamp"] = str(ts)
    if secret:
        out.headers["webhook-signature"] = standard_webhooks_sign(secret, msg_id, ts, out.body)


# --- the registry ----------------------------------------------------------------------------

_ENTRIES = [
    Platform(
        "slack",
        "Slack",
        _slack,
        rate=(1, 1.0),
        gone_answers=frozenset(
            {
                "no_service",
                "no_team",
                "channel_not_found",
                "channel_is_archived",
                "team_disabled",
                "no_active_hooks",
            }
        ),
    ),
    Platform("discord", "Discord", _discord, rate=(5, 2.0)),
    Platform("teams", "Teams", _teams, rate=(4, 1.0)),
    Platform(
        "feishu",
        "Feishu",
        _feishu,
        rate=(5, 1.0),
        sign=_sign_feishu,
        signed=True,
        body_codes=BodyCodes("code", frozenset({11232}), retry_after=5.0),
    ),
    Platform(
        "dingtalk",
        "DingTalk",
        _dingtalk,
        rate=(20, 60.0),
        sign=_sign_dingtalk,
        signed=True,
        body_codes=BodyCodes("errcode", frozenset({130101, 410100, -1}), frozenset({300001})),
    ),
    Platform(
        "wecom",
        "WeCom",
        _wecom,
        rate=(20, 60.0),
        body_codes=BodyCodes("errcode", frozenset({45009, -1}), frozenset({93000})),
    ),
    Platform(
        "generic",
        "generic",
        _generic,
        sign=_sign_generic,
        signed=True,
        secret_prefix="whsec_",
        secret_format="a Standard Webhooks secret (whsec_...)",
        new_secret=new_standard_webhooks_secret,
    ),
]

PLATFORMS: dict[str, Platform] = {p.name: p for p in _ENTRIES}
NAMES: tuple[str, ...] = tuple(PLATFORMS)
RATES: dict[str, tuple[int, float]] = {p.name: p.rate for p in _ENTRIES if p.rate}
SIGNED: tuple[str, ...] = tuple(p.name for p in _ENTRIES if p.signed)


def get(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; one of {', '.join(NAMES)}") from None


def names_text(sep: str = "|") -> str:
    """ "slack|discord|..." for help texts."""
    return sep.join(NAMES)


def labels_text() -> str:
    """ "Slack, Discord, ..., generic" for help texts."""
    return ", ".join(p.label for p in _ENTRIES)


def secret_help() -> str:
    """Which platforms take a signing secret, for help texts."""
    plain = [p.label for p in _ENTRIES if p.signed and not p.secret_prefix]
    prefixed = [
        f"{p.label}: {p.secret_prefix}...{', generated if omitted' if p.new_secret else ''}"
        for p in _ENTRIES
        if p.signed and p.secret_prefix
    ]
    return f"Signing secret ({'; '.join([', '.join(plain), *prefixed])})."
