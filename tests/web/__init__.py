"""Tests of newsletter.web: the API, admin UI, public pages and health endpoints."""
