"""Scoring whole origination files with a bundle: imports only loan_default.core."""
