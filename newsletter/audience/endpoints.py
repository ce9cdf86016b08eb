"""Team webhook endpoints: validation (with the SSRF guard), topics, enable/disable, health."""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, or_, select, update
from sqlmodel import Session

from newsletter.audience.subscribers import check_timezone
from newsletter.core import platforms
from newsletter.core.models import Topic, WebhookEndpoint, WebhookTopic, utcnow
from newsletter.core.periods import FREQUENCIES
from newsletter.core.settings import Settings
from newsletter.core.ssrf import UnsafeURLError, check_url
from newsletter.core.text import url_character_problem
from newsletter.topics.catalogue import TopicError, topics_by_slug

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SIGNED = platforms.SIGNED


class WebhookError(ValueError):
    """A webhook request that cannot be carried out, with the reason; `field` names the
    input at fault when there is one (a form shows the reason next to it)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class EndpointIn(BaseModel):
    name: str
    platform: str
    url: str
    secret: str | None = None
    secret_env: str | None = None
    topics: list[str] = Field(default_factory=list)
    mode: str = "instant"
    language: str = "en"
    timezone: str = "UTC"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v.strip()):
            raise ValueError("name may hold letters, digits, '.', '_' and '-' (max 100)")
        return v.strip()

    @field_validator("platform")
    @classmethod
    def _platform(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in platforms.PLATFORMS:
            raise ValueError(f"platform must be one of {platforms.names_text(', ')}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip(" \t\r\n")
        if not v:
            raise ValueError("give the webhook URL")
        if len(v) > 2000:
            raise ValueError(f"url is {len(v)} characters long; at most 2000 are allowed")
        problem = url_character_problem(v)
        if problem:  # e.g. U+202E, which shows an admin a URL other than the one called
            raise ValueError(f"url contains {problem}")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None and len(v) > 500:
            raise ValueError(f"secret is {len(v)} characters long; at most 500 are allowed")
        if v is not None and any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("secret must not contain control characters (line breaks, tabs)")
        return v

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in FREQUENCIES:
            raise ValueError(f"mode must be one of {', '.join(FREQUENCIES)}")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if v not in ("zh", "en"):
            raise ValueError("language must be zh or en")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> list[str]:
        if isinstance(v, str):
            v = v.split(",")
        return [str(t).strip() for t in v or [] if str(t).strip()]


new_generic_secret = platforms.new_standard_webhooks_secret


def check_secret(platform: str, secret: str | None) -> None:
    """A secret in the form the platform needs (a generic one is a whsec_... secret)."""
    entry = platforms.get(platform)
    if secret and entry.secret_prefix and not secret.startswith(entry.secret_prefix):
        raise WebhookError(
            f"a {entry.label} webhook secret must be {entry.secret_format}", field="secret"
        )


def mask(secret: str | None) -> str:
    """Enough to tell secrets apart, nothing to guess from: the last 4 characters at most."""
    if not secret:
        return "-"
    if len(secret) < 16:  # the last 4 of a short secret would give away too much of it
        return "••••"
    return f"••••{secret[-4:]}"


def mask_url(url: str) -> str:
    """Scheme and host; the path and query (which often hold a token) masked like a secret."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    rest = url[len(f"{parts.scheme}://{parts.netloc}") :].lstrip("/")
    return f"{origin}/{mask(rest)}" if rest else f"{origin}/"


def endpoint_secret(endpoint: WebhookEndpoint) -> str | None:
    if endpoint.secret_env:
        return os.environ.get(endpoint.secret_env) or None
    return endpoint.secret


def check_endpoint_url(settings: Settings, url: str) -> None:
    try:
        check_url(
            url,
            allow_http=settings.webhook_allow_http,
            allow_networks=settings.webhook_allow_networks,
        )
    except UnsafeURLError as exc:
        raise WebhookError(f"refusing webhook URL: {exc}", field="url") from exc


def get_endpoint(*, session: Session, name: str) -> WebhookEndpoint:
    ep = session.execute(select(WebhookEndpoint).where(WebhookEndpoint.name == name)).scalar()
    if ep is None:
        raise WebhookError(f"no webhook named {name!r}")
    return ep


def endpoint_topics(*, session: Session, endpoint: WebhookEndpoint) -> list[Topic]:
    return list(
        session.execute(
            select(Topic)
            .join(WebhookTopic, WebhookTopic.topic_id == Topic.id)
            .where(WebhookTopic.endpoint_id == endpoint.id)
            .order_by(Topic.position)
        ).scalars()
    )


def set_endpoint_topics(*, session: Session, endpoint: WebhookEndpoint, slugs: list[str]) -> None:
    topics = topics_by_slug(session=session, slugs=slugs)
    for row in session.execute(
        select(WebhookTopic).where(WebhookTopic.endpoint_id == endpoint.id)
    ).scalars():
        session.delete(row)
    session.flush()
    for t in topics:
        session.add(WebhookTopic(endpoint_id=endpoint.id, topic_id=t.id))
    session.flush()


def check_topics(session: Session, slugs: list[str]) -> None:
    """Every slug names a topic (an unknown one is a WebhookError on the topics field)."""
    try:
        topics_by_slug(session=session, slugs=slugs)
    except TopicError as exc:
        raise WebhookError(str(exc), field="topics") from exc


def add_endpoint(
    *, session: Session, settings: Settings, ep_in: EndpointIn, source: str = "admin"
) -> WebhookEndpoint:
    if not ep_in.topics:
        raise WebhookError("choose at least one topic", field="topics")
    check_topics(session, ep_in.topics)
    if session.execute(select(WebhookEndpoint).where(WebhookEndpoint.name == ep_in.name)).scalar():
        raise WebhookError(f"a webhook named {ep_in.name!r} exists already", field="name")
    if ep_in.secret_env is None:
        check_endpoint_url(settings, ep_in.url)
    secret = ep_in.secret
    entry = platforms.get(ep_in.platform)
    if entry.new_secret and not secret and not ep_in.secret_env:
        secret = entry.new_secret()
    check_secret(ep_in.platform, secret)
    ep = WebhookEndpoint(
        name=ep_in.name,
        platform=ep_in.platform,
        url=ep_in.url,
        secret=secret,
        secret_env=ep_in.secret_env,
        mode=ep_in.mode,
        language=ep_in.language,
        timezone=ep_in.timezone,
        source=source,
    )
    session.add(ep)
    session.flush()
    set_endpoint_topics(session=session, endpoint=ep, slugs=ep_in.topics)
    return ep


def update_endpoint(
    *, session: Session, settings: Settings, endpoint: WebhookEndpoint, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Apply the given fields (platform, url, secret, topics, mode, language, timezone);
    others stay. A new platform must take the endpoint's secret (or a new one) as it is."""
    given = {k: v for k, v in changes.items() if v is not None}
    wanted = EndpointIn.model_validate(
        {
            "name": endpoint.name,
            "platform": endpoint.platform,
            "url": endpoint.url,
            "secret": endpoint.secret,
            "mode": endpoint.mode,
            "language": endpoint.language,
            "timezone": endpoint.timezone,
            **given,
            "topics": given["topics"]
            if "topics" in given
            else [t.slug for t in endpoint_topics(session=session, endpoint=endpoint)],
        }
    )
    if "topics" in given:
        if not wanted.topics:
            raise WebhookError("choose at least one topic", field="topics")
        check_topics(session, wanted.topics)
    if "url" in given:
        check_endpoint_url(settings, wanted.url)
    if "secret" in given or wanted.platform != endpoint.platform:
        check_secret(wanted.platform, wanted.secret)
    entry = platforms.get(wanted.platform)
    if entry.secret_prefix and not wanted.secret and not endpoint.secret_env:
        raise WebhookError(
            f"a {entry.label} webhook needs its secret ({entry.secret_format})", field="secret"
        )
    endpoint.platform, endpoint.url, endpoint.secret = wanted.platform, wanted.url, wanted.secret
    endpoint.mode, endpoint.language, endpoint.timezone = (
        wanted.mode,
        wanted.language,
        wanted.timezone,
    )
    session.add(endpoint)
    if "topics" in given:
        set_endpoint_topics(session=session, endpoint=endpoint, slugs=wanted.topics)
    session.flush()
    return endpoint


def mark_disabled(*, session: Session, endpoint: WebhookEndpoint, reason: str) -> None:
    """The endpoint as disabled, with the reason. Its queued rows are the outbox's to
    hold: `pipeline.disable_endpoint` does both."""
    endpoint.enabled, endpoint.disabled_reason = False, reason[:500]
    session.add(endpoint)
    session.flush()


def mark_enabled(*, session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint as enabled, its failure count cleared (`pipeline.enable_endpoint`
    also queues its held rows again)."""
    endpoint.enabled, endpoint.disabled_reason = True, None
    endpoint.consecutive_failures, endpoint.first_failure_at = 0, None
    session.add(endpoint)
    session.flush()


def note_results(
    *,
    session: Session,
    results: dict[int, tuple[bool, str | None, bool]],
    disable_after_failures: int,
    disable_after_hours: float,
) -> list[tuple[int, str]]:
    """Note a batch's results per endpoint, {endpoint id: (ok, error, gone)}: a success
    resets the failure count; a failure adds one, and disables the endpoint (its queued
    messages held) once it has failed too many times for too long, or at once if the
    platform says it is gone. Returns the endpoints this disabled, with the reason (the
    caller holds their queued rows).

    Set-based: one UPDATE for the endpoints that worked, one for those that failed.
    """
    now = utcnow()
    ok = [i for i, (good, _, _) in results.items() if good]
    if ok:
        session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id.in_(ok),
                or_(
                    WebhookEndpoint.consecutive_failures != 0,
                    WebhookEndpoint.first_failure_at.is_not(None),
                ),
            )
            .values(consecutive_failures=0, first_failure_at=None)
            .execution_options(synchronize_session=False)
        )
    failed = {i: r for i, r in results.items() if not r[0]}
    if not failed:
        return []
    rows = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(list(failed)))
        .values(
            consecutive_failures=WebhookEndpoint.consecutive_failures + 1,
            first_failure_at=func.coalesce(WebhookEndpoint.first_failure_at, now),
        )
        .returning(
            WebhookEndpoint.id,
            WebhookEndpoint.enabled,
            WebhookEndpoint.consecutive_failures,
            WebhookEndpoint.first_failure_at,
        )
        .execution_options(synchronize_session=False)
    ).all()
    disabled = []
    for endpoint_id, enabled, failures, since in rows:
        _, error, gone = failed[endpoint_id]
        since = _aware(since)
        too_many = failures >= disable_after_failures and now - since >= dt.timedelta(
            hours=disable_after_hours
        )
        if not enabled or not (gone or too_many):
            continue
        why = (
            f"the platform says the webhook is gone: {error}"
            if gone
            else f"{failures} consecutive failures since {since:%Y-%m-%d %H:%M} UTC; last: {error}"
        )
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            continue  # deleted meanwhile
        mark_disabled(session=session, endpoint=endpoint, reason=why)
        disabled.append((endpoint_id, why))
    return disabled


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def list_endpoints(*, session: Session) -> list[WebhookEndpoint]:
    return list(session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.name)).scalars())


def remove_endpoint(*, session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint and its topics; its outbox rows must be detached first
    (`pipeline.remove_endpoint` does both)."""
    for row in session.execute(
        select(WebhookTopic).where(WebhookTopic.endpoint_id == endpoint.id)
    ).scalars():
        session.delete(row)
    session.flush()  # before the endpoint goes, or the database cascade races the ORM
    session.delete(endpoint)
    session.flush()


def sync_team(session: Session, settings: Settings, where: str, entry: Any):
    """Apply one `teams:` roster entry (upsert by name); secrets come from the environment."""
    from newsletter.audience.rosters import EntryResult

    name = str(entry.get("name", "?")) if isinstance(entry, dict) else "?"
    try:
        if not isinstance(entry, dict):
            raise WebhookError("entry must be a mapping")
        data = dict(entry)
        if "secret" in data:
            raise WebhookError(
                "write secret_env (an environment variable name), never the secret itself"
            )
        url_env = data.pop("url_env", None)
        if url_env:
            data["url"] = os.environ.get(url_env) or ""
            if not data["url"]:
                raise WebhookError(f"environment variable {url_env} (url_env) is not set")
        if data.get("secret_env") and not os.environ.get(data["secret_env"]):
            raise WebhookError(f"environment variable {data['secret_env']} (secret_env) is not set")
        ep_in = EndpointIn.model_validate(data)
        with session.begin_nested():
            existing = session.execute(
                select(WebhookEndpoint).where(WebhookEndpoint.name == ep_in.name)
            ).scalar()
            if existing is None:
                add_endpoint(session=session, settings=settings, ep_in=ep_in, source="roster")
                return EntryResult(where, ep_in.name, "created")
            changed = False
            if existing.url != ep_in.url:
                check_endpoint_url(settings, ep_in.url)
            for key in ("platform", "url", "secret_env", "mode", "language", "timezone"):
                if getattr(existing, key) != getattr(ep_in, key):
                    setattr(existing, key, getattr(ep_in, key))
                    changed = True
            if sorted(
                t.slug for t in endpoint_topics(session=session, endpoint=existing)
            ) != sorted(ep_in.topics):
                set_endpoint_topics(session=session, endpoint=existing, slugs=ep_in.topics)
                changed = True
            session.add(existing)
            return EntryResult(where, ep_in.name, "updated" if changed else "unchanged")
    except Exception as exc:  # noqa: BLE001 - every entry reports its own reason
        from pydantic import ValidationError

        from newsletter.topics.catalogue import TopicError

        if not isinstance(exc, ValidationError | WebhookError | TopicError):
            raise
        reason = (
            "; ".join(e["msg"] for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        return EntryResult(where, name, "invalid", reason)


def endpoint_topic_slugs(session: Session) -> dict[int, tuple[str, ...]]:
    """Each endpoint's topic slugs, in the topics' order."""
    out: dict[int, list[str]] = {}
    for ep_id, slug in session.execute(
        select(WebhookTopic.endpoint_id, Topic.slug)
        .join(Topic, Topic.id == WebhookTopic.topic_id)
        .order_by(Topic.position)
    ):
        out.setdefault(ep_id, []).append(slug)
    return {k: tuple(v) for k, v in out.items()}


def endpoint_state(*, session: Session, endpoint: WebhookEndpoint) -> dict[str, str]:
    """What an admin may change, as the audit log describes it: the URL and the secret
    masked, never in full."""
    return {
        "platform": endpoint.platform,
        "url": mask_url(endpoint.url),
        "secret": f"${endpoint.secret_env}" if endpoint.secret_env else mask(endpoint.secret),
        "topics": ",".join(t.slug for t in endpoint_topics(session=session, endpoint=endpoint)),
        "mode": endpoint.mode,
        "language": endpoint.language,
        "timezone": endpoint.timezone,
    }


def describe_change(
    before: dict[str, str] | None, after: dict[str, str], *, secret_changed: bool = False
) -> str:
    """An audit detail: the whole (masked) state of a new endpoint, or which fields changed
    and their new (masked) values (`secret_changed`: a new secret whose mask is the old
    one's)."""
    if before is None:
        return "; ".join(f"{k} {v}" for k, v in after.items())
    changed = [k for k in after if before.get(k) != after[k] or (k == "secret" and secret_changed)]
    return "; ".join(f"{k} {after[k]}" for k in changed) or "nothing changed"
