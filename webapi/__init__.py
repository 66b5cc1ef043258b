"""The HTTP interface, Dalga-compatible: create_app(settings) returns the Flask app."""

from webapi.app import create_app

__all__ = ["create_app"]
