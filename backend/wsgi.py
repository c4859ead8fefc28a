"""WSGI entry point for Gunicorn: `gunicorn -c gunicorn_config.py backend.wsgi:app`."""
from backend import create_app

app = create_app()
