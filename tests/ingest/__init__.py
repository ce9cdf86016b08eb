"""Tests of newsletter.ingest: feeds and event imports."""
