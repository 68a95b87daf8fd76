"""Evals: OpenAI's Evals API (evals, runs, output items), the graders that score items, and the runs' state machine."""
