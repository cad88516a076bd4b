"""FastAPI scoring service for a model bundle."""
