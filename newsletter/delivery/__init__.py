"""Delivery: the outbox, the worker, email assembly, chat cards and sending, the channels.

Everything that turns a queued delivery row into a sent message lives here, and only
the outbox module writes a delivery's status.
"""
