"""Shared building blocks: ORM base, public ids, timestamps, cursor pagination, schema base."""
