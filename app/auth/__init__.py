"""Tenancy: projects, their API keys, and the principal every /v1 request runs as."""
