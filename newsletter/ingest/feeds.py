"""RSS/Atom feeds as a source: conditional GET over httpx, feedparser, events, backoff.

A broken or unreachable feed records its error and waits longer before the next try;
it never stops the others.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import feedparser
import httpx
from pydantic import ValidationError
from sqlalchemy import Engine, func, or_, select, update
from sqlmodel import Session

from newsletter.core.metrics import FEED_POLLS
from newsletter.core.models import Event, Feed, utcnow
from newsletter.core.ssrf import UnsafeURLError, check_url, pin
from newsletter.core.text import normalise_url, one_line
from newsletter.ingest.events import EventIn, add_event
from newsletter.topics.catalogue import compiled_rules

log = logging.getLogger("newsletter.ingest.feeds")
_TAGS = re.compile(r"<[^>]+>")
MAX_REDIRECTS = 3


class FeedError(ValueError):
    """A feed request that cannot be carried out, with the reason (and, when one field
    is to blame, its name: url, name, region or language)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class PollResult:
    feed: str
    status: str  # new | not-modified | error
    new_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0
    error: str | None = None


def html_to_text(value: str) -> str:
    """Feed summaries are HTML; we keep plain text only."""
    text = re.sub(r"(?i)<br\s*/?>|</p>", "\n", value or "")
    return html.unescape(_TAGS.sub("", text)).strip()


# How often the scheduler looks for feeds that are due (its `feeds` job).
CHECK_SECONDS = 60.0
# Longest wait after errors, however many in a row.
MAX_BACKOFF = dt.timedelta(hours=24)


def poll_interval(settings, failures: int) -> dt.timedelta:
    """How long after a poll the feed is due again: NEWSLETTER_FEED_POLL_MINUTES after a
    good poll, doubling with each error in a row (up to 64 times, at most a day)."""
    minutes = settings.feed_poll_minutes * (2 ** min(failures, 6) if failures else 1)
    return min(dt.timedelta(minutes=minutes), MAX_BACKOFF)


def _checked(
    *, session: Session, settings, url: str, name: str | None, region: str, language: str,
    feed: Feed | None = None,
) -> dict[str, str]:  # fmt: skip
    """The feed's fields cleaned, or FeedError naming what is wrong (nothing is stored)."""
    from newsletter.ingest.events import LANGUAGE, REGION

    try:
        if len(url) > 2000:
            raise ValueError("url is longer than 2000 characters")
        url = normalise_url(url)
        check_url(url, allow_http=True, allow_networks=settings.webhook_allow_networks)
    except (ValueError, UnsafeURLError) as exc:
        raise FeedError(f"refusing feed URL: {exc}", "url") from exc
    region, language = region.strip().lower(), language.strip().lower()
    if not REGION.match(region):
        raise FeedError("region must be a lower-case code such as global or china", "region")
    if not LANGUAGE.match(language):
        raise FeedError(
            f"language {language!r} is not a language code such as zh or en", "language"
        )
    name = one_line(name or url.split("//", 1)[1].split("/", 1)[0])[:200]
    if "/" in name:
        raise FeedError("a feed name cannot contain '/'", "name")
    others = select(Feed.name).where(Feed.id != feed.id) if feed else select(Feed.name)
    same_url = session.execute(others.where(Feed.url == url)).scalar()
    if same_url is not None:
        raise FeedError(f"the feed {same_url!r} has this URL: it exists already", "url")
    if session.execute(others.where(Feed.name == name)).scalar() is not None:
        raise FeedError(f"a feed named {name!r} exists already", "name")
    return {"url": url, "name": name, "region": region, "language": language}


def add_feed(
    *, session: Session, settings, url: str, name: str | None, region: str, language: str
) -> Feed:
    fields = _checked(
        session=session, settings=settings, url=url, name=name, region=region, language=language
    )
    feed = Feed(
        url=fields["url"], name=fields["name"], region=fields["region"],
        language=fields["language"],
    )  # fmt: skip
    session.add(feed)
    session.flush()
    return feed


def update_feed(
    *,
    session: Session,
    settings,
    feed: Feed,
    url: str | None = None,
    name: str | None = None,
    region: str | None = None,
    language: str | None = None,
) -> list[str]:
    """Change a feed (what is not given stays); the names of the fields that changed.

    A new URL is another source: it is checked like a new feed's, its cache validators
    and error count start afresh, and it is due at the scheduler's next check. Events
    the feed brought keep their source name and region."""
    fields = _checked(
        session=session,
        settings=settings,
        url=feed.url if url is None else url,
        name=feed.name if name is None else name,
        region=feed.region if region is None else region,
        language=feed.language if language is None else language,
        feed=feed,
    )
    changed = [key for key, value in fields.items() if getattr(feed, key) != value]
    for key in changed:
        setattr(feed, key, fields[key])
    if "url" in changed:
        feed.etag = feed.last_modified = feed.last_error = feed.next_poll_at = None
        feed.consecutive_failures = 0
    session.add(feed)
    session.flush()
    return changed


def get_feed(*, session: Session, name: str) -> Feed:
    feed = session.execute(select(Feed).where(or_(Feed.name == name, Feed.url == name))).scalar()
    if feed is None:
        raise FeedError(f"no feed named {name!r}")
    return feed


def list_feeds(*, session: Session) -> list[Feed]:
    return list(session.execute(select(Feed).order_by(Feed.name)).scalars())


def event_counts(*, session: Session) -> dict[int, int]:
    """How many stored events each feed brought, by feed id (feeds with none are absent)."""
    rows = session.execute(
        select(Event.feed_id, func.count())
        .where(Event.feed_id.is_not(None))
        .group_by(Event.feed_id)
    )
    return {feed_id: count for feed_id, count in rows}


def remove_feed(*, session: Session, feed: Feed) -> None:
    """Stop polling a feed; the events it brought stay, detached from it."""
    session.execute(update(Event).where(Event.feed_id == feed.id).values(feed_id=None))
    session.delete(feed)
    session.flush()


def fetch(client: httpx.Client, feed: Feed, settings) -> httpx.Response | None:
    """GET with the validators we have; None on 304. Redirects are followed and re-checked.

    Every hop is checked by the SSRF guard and then sent to the very address it checked
    (`pin`), so a name that resolves differently the second time cannot reach the inside.
    """
    headers = {
        "User-Agent": "newsletter-feeds/1",
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    url = feed.url
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(url, allow_http=True, allow_networks=settings.webhook_allow_networks)
        pinned = pin(url, target)
        with client.stream(
            "GET", pinned.url, headers={**headers, **pinned.headers}, extensions=pinned.extensions
        ) as response:
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code == 304:
                return None
            if response.status_code >= 400:
                raise FeedError(f"HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > settings.feed_max_bytes:
                    raise FeedError(f"feed is larger than {settings.feed_max_bytes} bytes")
            response._content = body
            return response
    raise FeedError("too many redirects")


def entry_event(entry, feed: Feed) -> dict:
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    day = (
        dt.datetime.fromtimestamp(calendar.timegm(when), dt.UTC).date() if when else utcnow().date()
    )
    return {
        "title": {feed.language: html_to_text(entry.get("title", ""))},
        "summary": {feed.language: html_to_text(entry.get("summary", ""))[:4000]},
        "url": entry.get("link") or "",
        "source": feed.name,
        "region": feed.region,
        "language": feed.language,
        "occurred_on": day,
    }


def poll_feed(
    *, session: Session, client: httpx.Client, feed: Feed, settings, now: dt.datetime
) -> PollResult:
    result = PollResult(feed.name, "new")
    feed.last_polled_at = now
    try:
        response = fetch(client, feed, settings)
        if response is None:
            result.status = "not-modified"
        else:
            parsed = feedparser.parse(
                response.content,
                response_headers={k.lower(): v for k, v in response.headers.items()},
            )
            if parsed.bozo and not parsed.entries:
                raise FeedError(f"not a feed: {parsed.get('bozo_exception')!s}"[:300])
            rules = compiled_rules(session=session)
            for entry in parsed.entries:
                try:
                    event_in = EventIn.model_validate(entry_event(entry, feed))
                except (ValidationError, ValueError):
                    result.invalid += 1
                    continue
                with session.begin_nested():
                    added = add_event(
                        session=session, event_in=event_in, rules=rules, feed_id=feed.id
                    )
                if added.event is not None:
                    result.new_ids.append(added.event.id)
                else:
                    result.duplicates += 1
            feed.etag = response.headers.get("etag")
            feed.last_modified = response.headers.get("last-modified")
    except (FeedError, UnsafeURLError, httpx.HTTPError) as exc:
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"[:500]
    if result.status == "error":
        feed.consecutive_failures += 1
        feed.last_error = result.error
        log.warning(
            "feed %s failed (%d in a row): %s", feed.name, feed.consecutive_failures, result.error
        )
    else:
        feed.consecutive_failures, feed.last_error, feed.last_ok_at = 0, None, now
    feed.last_new_events = len(result.new_ids)
    feed.next_poll_at = now + poll_interval(settings, feed.consecutive_failures)
    FEED_POLLS.labels(result.status).inc()
    session.add(feed)
    session.commit()
    return result


def poll_feeds(
    *,
    engine: Engine,
    settings,
    only: str | None = None,
    now: dt.datetime | None = None,
    client: httpx.Client | None = None,
    after_poll: Callable[[Session, PollResult], None] | None = None,
) -> list[PollResult]:
    """Poll every feed that is due (or the named one now), each in its own transaction.

    `after_poll` sees each feed's result in its session before the next feed
    (`pipeline.poll_feeds` queues the alerts for the new events there)."""
    now = now or utcnow()
    own = client is None
    client = client or httpx.Client(
        timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False, trust_env=False
    )
    results = []
    try:
        with Session(engine, expire_on_commit=False) as session:
            if only:
                feeds = [get_feed(session=session, name=only)]
            else:
                feeds = list(
                    session.execute(
                        select(Feed)
                        .where(or_(Feed.next_poll_at.is_(None), Feed.next_poll_at <= now))
                        .order_by(Feed.id)
                    ).scalars()
                )
            for feed in feeds:
                result = poll_feed(
                    session=session, client=client, feed=feed, settings=settings, now=now
                )
                if result.new_ids and after_poll is not None:
                    after_poll(session, result)
                    session.commit()
                results.append(result)
    finally:
        if own:
            client.close()
    return results
