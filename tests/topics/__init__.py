"""Tests of newsletter.topics: topic catalogue and matching rules."""
