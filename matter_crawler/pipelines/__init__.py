"""Item pipelines: validation, then batched storage."""
