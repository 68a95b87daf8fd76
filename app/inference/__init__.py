"""OpenAI-style inference: chat completions and completions, routed to the model that should answer."""
