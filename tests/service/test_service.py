"""`newsletter serve` as a real process: the sample digest arrives by SMTP; SIGTERM stops it."""

import os
import signal
import subprocess
import sys
import time

from tests.support.smtp_server import free_port


def test_serve_sends_the_sample_digest_and_stops_on_sigterm(db_url, smtp_server, tmp_path):
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_SMTP_URL": smtp_server.url}
    run = [sys.executable, "-m", "newsletter"]
    assert (
        subprocess.run(
            [*run, "sample", "load", "--with-readers"], env=env, cwd=tmp_path, capture_output=True
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [*run, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(smtp_server.recorder.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        subjects = sorted(r.message["Subject"] for r in smtp_server.recorder.received)
        assert subjects == [
            "AI Industry Brief · Monthly review · July 2025",
            "AI 产业简报 · 月度观察 · 2025年7月",
        ]
        show = subprocess.run(
            [*run, "schedule", "show"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert "digests: due ones looked for every 5 min, next " in show.stdout, show.stdout
        assert "alerts: new events checked every 20 s" in show.stdout
        assert "feeds: due ones polled every 1 min" in show.stdout
        assert "next monthly digest: 1 " in show.stdout and "Europe/London" in show.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "shutting down" in out and "stopped" in out
