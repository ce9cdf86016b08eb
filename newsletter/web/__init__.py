"""The web: public subscriber pages, the admin REST API and the admin UI (FastAPI)."""
