"""The bad-input suite (pytest -m bad_input): hostile and unusual input, faults."""
