"""Webhooks: projects register URLs; job outcomes are POSTed there, signed, retried, never blocking a job."""
