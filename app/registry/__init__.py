"""The model registry: base models (from providers) and the fine-tuned models jobs produce."""
