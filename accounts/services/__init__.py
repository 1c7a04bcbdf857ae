"""Writes for members and consent. Reads live in ``accounts.selectors``."""
