"""Offline tools: no gateway, no network."""
