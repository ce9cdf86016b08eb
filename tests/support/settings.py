"""Settings for tests that mail digests to a local SMTP server."""

from __future__ import annotations

from newsletter.core.settings import Settings
from tests.support.env import TEST_SECRET_KEY


def mail_settings(db_url, smtp_url=None, **kw) -> Settings:
    """Mail to `smtp_url` from a fixed sender and site, retrying within a fraction of a
    second so that failure paths stay quick; `kw` overrides any setting."""
    base = dict(
        database_url=db_url,
        smtp_url=smtp_url,
        base_url="https://news.example.org",
        mail_from="AI Brief <brief@news.example.org>",
        retry_base_seconds=0.02,
        retry_max_seconds=0.1,
        secret_key=TEST_SECRET_KEY,
    )
    base.update(kw)
    return Settings(**base)
