"""The FastAPI scoring service: imports only loan_default.core (no training code)."""
