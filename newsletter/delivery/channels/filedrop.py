"""The embedded default: each message becomes an .eml file in a folder, written atomically."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from newsletter.delivery.channels.base import TemporaryDeliveryError


class FileDropChannel:
    name = "file"

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    async def send(self, *, sender: str, recipient: str, message: bytes, key: str = "") -> str:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key or recipient)[:150]
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as fh:
                fh.write(message)
                fh.flush()
                os.fsync(fh.fileno())
            final = self.directory / f"{stem}.eml"
            os.replace(tmp, final)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.directory}: {exc}") from exc
        return f"written {final.name}"

    async def aclose(self) -> None:
        return None
