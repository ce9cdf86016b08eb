"""Tests of newsletter.pipeline: the shipped sample."""
