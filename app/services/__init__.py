"""Orchestration: each service takes a database session factory and the chain runtime and does one job."""
