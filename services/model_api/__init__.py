"""FastAPI model API: serves the registry's `champion` of the taxi trip-duration model."""
