"""Tests of newsletter.cli: commands as an admin uses them."""
