"""Usage accounting (tokens per project, key and model) and per-key rate limits."""
