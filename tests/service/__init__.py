"""Tests of newsletter.service: the whole service as a real process."""
