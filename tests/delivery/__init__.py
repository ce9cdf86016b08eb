"""Tests of newsletter.delivery: channels, the worker, retries and faults."""
