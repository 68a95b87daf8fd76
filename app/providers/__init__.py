"""Training providers: the typed interface, the local trainer, and upstream OpenAI-compatible services."""
