"""Configuration read from the environment and `.env`, built once at the edge."""

from __future__ import annotations

import ipaddress
import json
import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# the `newsletter` folder, however deep this module sits in it, and the checkout around it
PACKAGE_DIR = Path(__file__).resolve().parents[__name__.count(".") - 1]
PROJECT_ROOT = PACKAGE_DIR.parent


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def default_templates_dir() -> Path:
    """The templates a built wheel carries inside the package; in a source checkout (or an
    editable install) the top-level `templates/` beside the package."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PROJECT_ROOT / "templates"


def web_origin(scheme: str, netloc: str) -> str | None:
    """`scheme://host[:port]` the way a browser's Origin header says it: lower case,
    punycode host, no default port; None for what is not an http(s) origin."""
    scheme, netloc = scheme.lower(), netloc.lower()
    host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
    if not host or not port.isdigit():
        host, port = netloc, ""
    if scheme not in ("http", "https") or not host or "@" in host:
        return None
    if port == {"http": "80", "https": "443"}[scheme]:
        port = ""
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    return f"{scheme}://{host}" + (f":{port}" if port else "")


class Settings(BaseSettings):
    """Every setting can be given as `NEWSLETTER_<NAME>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///./newsletter.db",
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
    mail_from_name_zh: str | None = Field(
        default=None,
        description="From display name for Chinese readers; default the brand's Chinese "
        "name when the From name is the shipped English one.",
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
    bounce_smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the inbound SMTP endpoint for bounces that `serve` runs; unset = none.",
    )
    bounce_smtp_host: str = Field(
        default="127.0.0.1", description="Address that endpoint listens on."
    )
    # the bounce mailbox, polled over IMAP
    bounce_imap_host: str | None = Field(
        default=None, description="IMAP server of the bounce mailbox; unset = not polled."
    )
    bounce_imap_port: int | None = Field(
        default=None, ge=1, le=65535, description="Default 993 with tls, else 143."
    )
    bounce_imap_tls: Literal["tls", "starttls", "plain"] = Field(
        default="tls",
        description="tls (implicit, port 993), starttls, or plain (only to this machine).",
    )
    bounce_imap_ca_file: Path | None = Field(
        default=None, description="CA certificates to trust instead of the system's (PEM)."
    )
    bounce_imap_user: str | None = Field(default=None, description="IMAP login.")
    bounce_imap_password: SecretStr | None = Field(default=None, description="IMAP password.")
    bounce_imap_folder: str = Field(default="INBOX", description="Folder read.")
    bounce_imap_processed_folder: str | None = Field(
        default=None,
        description="Folder processed messages are moved to; unset = flag them in place.",
    )
    bounce_imap_error_folder: str | None = Field(
        default=None,
        description="Folder unreadable messages are moved to; unset = as processed ones.",
    )
    bounce_imap_poll_seconds: float = Field(
        default=300.0, ge=5, description="How often `serve` polls the bounce mailbox."
    )
    bounce_imap_max_messages: int = Field(
        default=1000, ge=1, le=100_000, description="Messages read per poll, at most."
    )
    bounce_imap_timeout: float = Field(
        default=60.0, gt=0, description="Seconds an IMAP command may take."
    )

    # bounce webhooks of email providers at /webhooks/bounces/<provider>: each is off
    # until its credentials are set
    bounce_ses_topic_arns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Amazon SES through SNS: the topic ARNs (comma-separated) whose signed "
        "notifications are accepted and whose subscriptions are confirmed; empty = off.",
    )
    bounce_sns_max_age_hours: float = Field(
        default=24.0, gt=0, description="An SNS message signed longer ago than this is refused."
    )
    bounce_sns_cert_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL prefixes besides https://sns.<region>.amazonaws.com/ that SNS "
        "signing certificates and subscription URLs may come from (a private mirror).",
    )
    bounce_postmark_user: str | None = Field(
        default=None, description="Postmark: the HTTP Basic user of the webhook URL."
    )
    bounce_postmark_password: SecretStr | None = Field(
        default=None, description="Postmark: the HTTP Basic password; with the user = on."
    )
    bounce_sendgrid_public_key: str | None = Field(
        default=None,
        description="SendGrid: the Signed Event Webhook's verification key (base64 or PEM); "
        "set = on.",
    )
    bounce_mailgun_signing_key: SecretStr | None = Field(
        default=None, description="Mailgun: the HTTP webhook signing key; set = on."
    )
    bounce_webhook_max_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="SendGrid and Mailgun: a request signed further than this from now is refused.",
    )
    bounce_webhook_max_bytes: int = Field(
        default=2_000_000, gt=0, description="Largest bounce webhook request body read."
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
    # the monthly digest's proof and its sharp take's approval
    proof_to: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Editors' addresses that get a proof of each monthly digest before it "
        "goes out (a JSON list or comma-separated); empty = no scheduled proofs.",
    )
    proof_lead_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 27,
        description="How long before the monthly send the proof goes.",
    )
    take_deadline_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 27,
        description="How long after its scheduled time the monthly send waits for the sharp "
        "takes to be approved; 0 = never waits.",
    )
    take_unapproved: Literal["omit", "include"] = Field(
        default="omit",
        description="A sharp take not approved by the deadline (or at any send): omit it, or "
        "include the draft.",
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
    click_tracking: bool = Field(
        default=False,
        description="Count clicks on events' links in emails: links go through a signed "
        "redirect on this site (/r/<token>) that keeps daily counts per event and topic, "
        "never who clicked (unless an owner also turns on per-reader counts).",
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

    @field_validator("bounce_ses_topic_arns", "bounce_sns_cert_urls", "proof_to", mode="before")
    @classmethod
    def _string_list(cls, value):
        """A JSON list or a comma-separated string."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        return [str(v).strip() for v in value if str(v).strip()]

    @field_validator("proof_to")
    @classmethod
    def _proof_to(cls, value: list[str]) -> list[str]:
        from newsletter.core.addresses import proof_address

        return [proof_address(entry) for entry in value]

    @field_validator("bounce_sns_cert_urls")
    @classmethod
    def _cert_urls(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.fullmatch(r"https?://[^/?#@\s]+/[^?#\s]*", entry):
                raise ValueError(f"{entry!r} is not a URL prefix like https://host/path/")
        return value

    @field_validator("bounce_sendgrid_public_key")
    @classmethod
    def _sendgrid_key(cls, value: str | None) -> str | None:
        """Checked at start-up: a key that cannot be read would refuse every event."""
        if value is None:
            return None
        from newsletter.core.public_keys import load_ec_public_key

        load_ec_public_key(value)  # raises ValueError with the reason
        return value.strip()

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
            origin = web_origin(scheme, host) if sep and "/" not in host else None
            if origin is None:
                raise ValueError(f"{entry!r} is not an origin like https://example.org")
            origins.append(origin)
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

    @field_validator(
        "metrics_token",
        "bounce_postmark_user",
        "bounce_postmark_password",
        "bounce_mailgun_signing_key",
        "bounce_sendgrid_public_key",
        "bounce_imap_host",
        "bounce_imap_user",
        "bounce_imap_processed_folder",
        "bounce_imap_error_folder",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _bounce_mailbox(self) -> Settings:
        """A mailbox that cannot work, or would send its password in clear text over a
        network, is refused at start-up rather than at the first poll."""
        if self.bounce_imap_host is None:
            return self
        self.bounce_imap_host = self.bounce_imap_host.strip()
        if self.bounce_imap_user is None or self.bounce_imap_password is None:
            raise ValueError(
                "NEWSLETTER_BOUNCE_IMAP_HOST needs NEWSLETTER_BOUNCE_IMAP_USER and "
                "NEWSLETTER_BOUNCE_IMAP_PASSWORD"
            )
        if self.bounce_imap_tls == "plain" and self.bounce_imap_host not in LOOPBACK_HOSTS:
            raise ValueError(
                "NEWSLETTER_BOUNCE_IMAP_TLS=plain would send the password unencrypted: "
                "only allowed for a server on this machine (127.0.0.1); use tls or starttls"
            )
        for name in (
            self.bounce_imap_folder,
            self.bounce_imap_processed_folder,
            self.bounce_imap_error_folder,
        ):
            if name is not None and (not name.isascii() or not name.isprintable()):
                raise ValueError(
                    f"IMAP folder {name!r}: use the folder's ASCII name as the server lists it "
                    "(non-ASCII names are sent in modified UTF-7, e.g. &ZeVnLIqe-)"
                )
        folders = {self.bounce_imap_folder, self.bounce_imap_processed_folder}
        if self.bounce_imap_processed_folder and len(folders) == 1:
            raise ValueError(
                "NEWSLETTER_BOUNCE_IMAP_PROCESSED_FOLDER must differ from the folder read"
            )
        if self.bounce_imap_error_folder == self.bounce_imap_folder:
            raise ValueError("NEWSLETTER_BOUNCE_IMAP_ERROR_FOLDER must differ from the folder read")
        return self

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

    @property
    def bounce_webhook_providers(self) -> tuple[str, ...]:
        """The providers whose bounce webhooks are configured (and so answered)."""
        configured = {
            "ses": bool(self.bounce_ses_topic_arns),
            "postmark": bool(self.bounce_postmark_user and self.bounce_postmark_password),
            "sendgrid": bool(self.bounce_sendgrid_public_key),
            "mailgun": bool(self.bounce_mailgun_signing_key),
        }
        return tuple(name for name, on in configured.items() if on)


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
