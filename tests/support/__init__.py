"""Builders of synthetic test data (never shipped in the wheel)."""
