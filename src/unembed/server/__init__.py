"""The web demo and HTTP API: ``create_app`` (the app factory) and ``serve`` (run it with uvicorn)."""

from .app import create_app, serve, serve_in_thread

__all__ = ["create_app", "serve", "serve_in_thread"]
