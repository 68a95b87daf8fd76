"""Moving fine-tunes off an upstream OpenAI-compatible provider: import, retrain, keep the names, prove parity.

A :class:`~app.migration.models.Migration` walks each chosen upstream job through the same steps, saving its state
after every one so that an interrupted migration resumes where it stopped:

1. **alias**: the upstream fine-tuned model is registered in the project (``ft:<provider>:<project>:…``, served by
   the provider) and an alias named exactly as callers know it (``ft:gpt-4o-mini-…:acme:support:abc123``) points at
   it, so callers can move their ``base_url`` at once;
2. **copy**: its training and validation files are downloaded, checked against the upstream's size, stored and
   validated as any upload (or, when they are gone upstream, **distil**: a prompt set is answered by the upstream
   model and those answers become the training data);
3. **train**: a job on the chosen base model, its hyperparameters and method translated (every translation
   recorded);
4. **parity**: the upstream model and the new one answer the validation rows in an eval; the report keeps each
   criterion's pass rates and the rows on which they disagree;
5. the alias gets a second version, the new model with the upstream model as its fallback, left inactive: the
   **switch** promotes it (optionally only when parity holds), like any promotion.
"""
