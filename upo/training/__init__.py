"""Training machinery around the trainer: reference log-probs, the non-finite guard, checkpoints, several processes,
the model card."""
