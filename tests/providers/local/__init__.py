"""Tests of the local provider: real training on a tiny SmolLM2-shaped model, and on the real SmolLM2-135M."""
