"""Tests of newsletter.planning: who gets what, and when."""
