"""ftgw, the fine-tuning gateway."""

__version__ = "0.1.0"
