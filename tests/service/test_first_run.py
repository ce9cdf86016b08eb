"""The first run as a newcomer does it: `scripts/run --port N` in a fresh folder. The
service answers on that port, the demo emails link to it, and the start-up output says
where to look instead of listing every event."""

import email
import email.policy
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.env import ROOT
from tests.support.smtp_server import free_port

LINK = re.compile(r"""https?://[^\s"'<>)]+""")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def links(path: Path) -> list[str]:
    """Every link a reader can follow: the decoded parts and List-Unsubscribe."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    found = LINK.findall(str(msg["List-Unsubscribe"] or ""))
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            found += LINK.findall(part.get_content())
    return found


def test_scripts_run_on_another_port_links_emails_to_it(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NEWSLETTER_BASE_URL", "NEWSLETTER_SMTP_URL", "NEWSLETTER_SECRET_KEY_FILE")
    }
    env |= {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'newsletter.db'}",
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    log = tmp_path / "run.log"
    with log.open("w") as out:
        # its own process group: scripts/run is bash until it execs `newsletter serve`
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run"), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    outbox = tmp_path / "outbox"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if healthy(port) and len(list(outbox.glob("*.eml"))) >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()
        assert healthy(port), log.read_text()
        emails = sorted(outbox.glob("*.eml"))
        assert len(emails) == 2, log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    for path in emails:
        ours = [u for u in links(path) if "127.0.0.1" in u or "localhost" in u]
        assert any("/u/" in u for u in ours), ours  # the unsubscribe link, at least
        assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in ours), ours

    shown = log.read_text()
    assert f"Web app:   http://127.0.0.1:{port}/" in shown
    assert f"http://127.0.0.1:{port}/admin/" in shown and "admin token create" in shown
    assert f"written as .eml files into {outbox}" in shown
    # a short start, not the sample's events one per line, and nothing alarming
    assert "AI Act demands" not in shown and len(shown.splitlines()) < 30, shown
    assert "older than the catch-up horizon" not in shown and "WARNING" not in shown, shown
    assert proc.returncode == 0, shown
