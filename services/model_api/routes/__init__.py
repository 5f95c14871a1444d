"""Routes, split by concern: predictions, and operations (health, readiness, metrics)."""
