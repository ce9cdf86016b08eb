"""What comes back after a send: bounces (DSNs and non-standard ones), complaints (ARF),
and mails to the unsubscribe address. Read by `parse`, acted on by `process`, received
through `bounces import` (files, mbox) and `bounces serve` (inbound SMTP, `inbound`)."""
