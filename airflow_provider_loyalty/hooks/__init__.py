"""Hooks: one per vendor, owning its connection, authentication and HTTP calls."""
