"""Where the tests run: the database backend, the secret key every test uses, the repository's paths."""

from __future__ import annotations

import os
from pathlib import Path

BACKEND = os.environ.get("NEWSLETTER_TEST_BACKEND", "sqlite")
# the service refuses short or placeholder keys; every test runs with this one
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghij-XYZ"
PG_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")

# the repository's top folder, and the test data set in tests/data/
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
