"""Commands that talk to a running gateway, one module per resource (as openai-python's ``cli/_api/``)."""
