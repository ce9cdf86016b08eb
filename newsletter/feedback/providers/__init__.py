"""Email providers' bounce webhooks: one entry per provider, each a `read` that checks the
request's documented authentication and turns its body into events (`base.Event`).
Which ones answer is decided by the settings (`Settings.bounce_webhook_providers`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from newsletter.core.settings import Settings
from newsletter.feedback.providers import mailgun, postmark, sendgrid, ses
from newsletter.feedback.providers.base import Batch

Reader = Callable[[Settings, Mapping[str, str], bytes, dt.datetime], Batch]

PROVIDERS: dict[str, Reader] = {
    "ses": ses.read,
    "postmark": postmark.read,
    "sendgrid": sendgrid.read,
    "mailgun": mailgun.read,
}
