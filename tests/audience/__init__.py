"""Tests of newsletter.audience: subscribers and their addresses."""
