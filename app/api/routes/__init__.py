"""One router module per resource; each route documents its problem answers (app/api/openapi.py)."""
