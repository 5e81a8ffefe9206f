"""Quantization jobs: persisted in SQLite inside the store, run one at a time in a spawned worker."""
