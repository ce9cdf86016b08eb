"""Helpers shared by the test folders: real local servers, workers, builders of test data."""
