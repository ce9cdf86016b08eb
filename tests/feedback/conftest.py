"""Fixtures the feedback tests share: `sent` (every reader got July's digest through the
worker, over real SMTP) is defined beside the bounce tests that came first."""

from tests.feedback.test_bounces import sent  # noqa: F401 - a fixture
