"""Configuration read from the environment and `.env`, built once at the edge."""

from __future__ import annotations

import ipaddress
import json
import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# the `newsletter` folder, however deep this module sits in it, and the checkout around it
PACKAGE_DIR = Path(__file__).resolve().parents[__name__.count(".") - 1]
PROJECT_ROOT = PACKAGE_DIR.parent


def default_templates_dir() -> Path:
    """The templates a built wheel carries inside the package; in a source checkout (or an
    editable install) the top-level `templates/` beside the package."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PROJECT_ROOT / "templates"


class Settings(BaseSettings):
    """Every setting can be given as `NEWSLETTER_<NAME>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///./newsletter.core.db",
        description="SQLAlchemy URL; SQLite by default, postgresql+psycopg://... in production.",
    )
    templates_dir: Path = Field(
        default_factory=default_templates_dir,
        description="Jinja2 templates (email, webhooks, web); the packaged ones by default.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000", description="Public URL of the web app, used in links."
    )
    secret_key: str = Field(
        default="",
        description="Master key for admin sessions, CSRF tokens and reader links: 32+ random "
        "characters. Required to serve the web app or send mail.",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="A file holding the secret key, read when NEWSLETTER_SECRET_KEY is unset.",
    )
    default_timezone: str = Field(default="UTC", description="Time zone for new subscribers.")

    # email
    mail_from: str = Field(
        default="AI Industry Brief <brief@localhost>", description="From header of every email."
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:pass@host:587?starttls=true or smtps://host:465; unset = files in outbox_dir.",
    )
    smtp_connections: int = Field(default=4, ge=1, le=64, description="SMTP connections kept open.")
    smtp_timeout: float = Field(default=30.0, gt=0, description="Seconds per SMTP command.")
    send_rate: float = Field(default=0.0, ge=0, description="Messages per second; 0 = unlimited.")
    outbox_dir: Path = Field(
        default=Path("outbox"), description="Where .eml files go without SMTP."
    )
    dkim_key_file: Path | None = Field(default=None, description="PEM private key for DKIM.")
    dkim_selector: str | None = Field(default=None, description="DKIM selector (s=).")
    dkim_domain: str | None = Field(default=None, description="DKIM domain (d=); default From's.")

    # bounces and complaints
    verp: bool = Field(
        default=True,
        description="Send each email with its own return path (bounces+<token>@<bounce "
        "domain>) so a bounce names its delivery; false = the From address.",
    )
    bounce_domain: str | None = Field(
        default=None,
        description="Domain of the return path (bounces+<token>@...) and of the unsubscribe "
        "mailbox; default the From address's domain.",
    )
    bounce_token_days: int = Field(
        default=180, ge=1, description="A return-path token is honoured this many days."
    )
    bounce_threshold: float = Field(
        default=3.0,
        gt=0,
        description="Bounce score (hard 1, soft 0.5, one increment a day) that disables a reader.",
    )
    bounce_decay_days: float = Field(
        default=30.0, gt=0, description="A bounce score with no bounce for this long restarts at 0."
    )
    bounce_max_bytes: int = Field(
        default=10_000_000, gt=0, description="Largest bounce or unsubscribe mail read."
    )

    # webhooks
    webhook_allow_http: bool = Field(
        default=False, description="Allow http:// webhook URLs (https only by default)."
    )
    webhook_allow_networks: list[str] = Field(
        default_factory=list,
        description='CIDRs webhooks may reach although not public, e.g. ["127.0.0.0/8"].',
    )
    webhook_timeout: float = Field(
        default=15.0, gt=0, description="Total seconds per webhook POST."
    )
    webhook_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    webhook_concurrency: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Webhook requests in flight at once per worker (each endpoint is still "
        "paced to its platform's rate).",
    )
    webhook_disable_after_failures: int = Field(
        default=10, ge=1, description="Consecutive failures before an endpoint is disabled..."
    )
    webhook_disable_after_hours: float = Field(
        default=24.0, ge=0, description="...once it has been failing for at least this long."
    )
    alert_batch_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Instant alerts arriving within this window share a message.",
    )

    alert_lookback_hours: float = Field(
        default=24.0, gt=0, description="The scheduler alerts on events stored this recently."
    )

    # scheduler
    digest_send_time: str = Field(
        default="08:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Local time digests go out.",
    )
    catch_up_hours: float = Field(
        default=72.0, ge=0, description="After downtime, send missed digests due this recently."
    )
    digest_check_seconds: float = Field(
        default=300.0, gt=0, description="How often to look for due digests."
    )
    alert_check_seconds: float = Field(
        default=20.0, gt=0, description="How often to queue new alerts."
    )
    feed_poll_minutes: float = Field(
        default=15.0, gt=0, description="How often each feed is polled."
    )
    feed_max_bytes: int = Field(default=5_000_000, gt=0, description="Largest feed document read.")

    # web
    signup_per_ip_per_hour: int = Field(default=20, ge=1, description="Subscribe attempts per IP.")
    signup_per_address_per_hour: int = Field(default=3, ge=1, description="...and per address.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IPs/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed; "
        "empty = none (the connecting address is the client).",
    )
    embed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may post the embeddable "
        "sign-up form to /subscribe/embed; empty = only this site's own pages.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, /metrics needs `Authorization: Bearer <token>`.",
    )

    # outbox
    max_attempts: int = Field(default=8, ge=1, description="Tries before a message is dead.")
    retry_base_seconds: float = Field(default=30.0, gt=0, description="First retry delay.")
    retry_max_seconds: float = Field(default=6 * 3600.0, gt=0, description="Longest retry delay.")
    lease_seconds: float = Field(
        default=300.0, gt=0, description="A claimed row is reclaimable after this long."
    )
    # a killed worker may send this many again; 500 keeps that under a second of sending
    # while a batch's fixed costs (claim, queries, commit) no longer show per message
    worker_batch: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Rows a worker has sent and not yet recorded, at most (claimed in halves).",
    )

    # why the key file could not be read (reported when a key is needed, not at start-up)
    _secret_key_problem: str | None = PrivateAttr(default=None)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value):
        """A JSON list or a comma-separated string; each entry an IP address or network."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        proxies = []
        for entry in (str(v).strip() for v in value):
            if not entry:
                continue
            try:
                ip = ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or network") from exc
            proxies.append(str(ip) if "/" in entry else str(ip.network_address))
        return proxies

    @field_validator("embed_origins", mode="before")
    @classmethod
    def _origins(cls, value):
        """A JSON list or a comma-separated string of origins like https://example.org."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        origins = []
        for entry in (str(v).strip().rstrip("/") for v in value):
            if not entry:
                continue
            scheme, sep, host = entry.partition("://")
            if scheme not in ("http", "https") or not sep or not host or "/" in host:
                raise ValueError(f"{entry!r} is not an origin like https://example.org")
            origins.append(f"{scheme}://{host.lower()}")
        return origins

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        """Checked at start-up: a bad From would fail every message, permanently."""
        if any(c in value for c in "\r\n\x00"):
            raise ValueError("must be one line")
        _name, address = parseaddr(value)
        local, at, domain = address.rpartition("@")
        if not (local and at and domain):
            raise ValueError(f"needs an address, like 'Brief <brief@example.com>', got {value!r}")
        if not local.isascii():
            raise ValueError("the address needs an ASCII local part (not every server takes UTF-8)")
        return value

    @field_validator("bounce_domain", mode="before")
    @classmethod
    def _bounce_domain(cls, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        value = str(value).strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?", value) or ".." in value:
            raise ValueError(f"{value!r} is not a domain name like bounces.example.com")
        return value

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP network like 10.0.0.0/8") from exc
        return [v.strip() for v in value]

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _read_secret_key_file(self) -> Settings:
        if self.secret_key.strip() or self.secret_key_file is None:
            self.secret_key = self.secret_key.strip()
            return self
        try:
            self.secret_key = self.secret_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            self._secret_key_problem = (
                f"NEWSLETTER_SECRET_KEY_FILE {str(self.secret_key_file)!r} cannot be read "
                f"({exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'})"
            )
        return self

    @property
    def secret_key_problem(self) -> str | None:
        return self._secret_key_problem


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
