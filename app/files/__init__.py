"""The OpenAI-compatible files API and the blob store behind it."""
