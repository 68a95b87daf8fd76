"""Fine-tuning jobs: the OpenAI-compatible jobs API, the job state machine, events and checkpoints."""
