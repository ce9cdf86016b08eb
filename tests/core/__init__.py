"""Tests of newsletter.core: database, text, the outbox."""
