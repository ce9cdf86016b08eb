"""A real IMAP server on 127.0.0.1: Dovecot, started with its own configuration in a
temporary folder (one static test user, maildirs in that folder), on free ports for
plain/STARTTLS and implicit TLS, with a self-signed certificate for 127.0.0.1.

Dovecot's login processes refuse to run as root: under root they run as Dovecot's own
unprivileged users (which its Debian package creates) and the mail belongs to `dovecot`.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.smtp_server import free_port

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
)
USER, PASSWORD = "bounces@news.example.org", "imap-test-password"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    root: Path
    port: int
    tls_port: int
    proc: subprocess.Popen | None = None

    @property
    def ca_file(self) -> Path:
        return self.root / "cert.pem"

    def start(self) -> Dovecot:
        assert DOVECOT, "dovecot is not installed"
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
            + ["-keyout", str(self.root / "key.pem"), "-out", str(self.ca_file)],
            check=True,
            capture_output=True,
        )
        if os.geteuid() == 0:  # login processes must not run as root
            internal, login = pwd.getpwnam("dovecot"), pwd.getpwnam("dovenull")
            owner = internal
        else:
            internal = login = owner = pwd.getpwuid(os.geteuid())
        os.chown(self.root / "mail", owner.pw_uid, owner.pw_gid)
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(
                root=self.root,
                internal=internal.pw_name,
                internal_group=_group(internal.pw_gid),
                login=login.pw_name,
                uid=owner.pw_uid,
                gid=owner.pw_gid,
                password=PASSWORD,
                port=self.port,
                tls_port=self.tls_port,
            )
        )
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()} {self.proc.stderr.read()!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def remove(self) -> None:
        self.stop()
        if self.root.name.startswith("dovecot-"):
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- a client's view, for arranging and checking ------------------------------------

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            conn.create(folder)  # NO when it exists
            typ, data = conn.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def messages(self, folder: str = "INBOX") -> list[tuple[int, set[str], bytes]]:
        """(UID, flags, raw) of each message in `folder`, including \\Deleted ones."""
        conn = self.client()
        try:
            typ, _ = conn.select(folder, readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    head = item[0].decode()
                    uid = int(re.search(r"UID (\d+)", head).group(1))
                    flags = set(re.search(r"FLAGS \(([^)]*)\)", head).group(1).split())
                    found.append((uid, flags, item[1]))
            return found
        finally:
            conn.logout()


def _group(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def start_dovecot(root: Path) -> Dovecot:
    """Dovecot in `root`; under root in a folder of its own that its users can enter
    (pytest's temporary folders are private to their owner)."""
    if os.geteuid() == 0:
        root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        root.chmod(0o711)
    return Dovecot(root=root, port=free_port(), tls_port=free_port()).start()
