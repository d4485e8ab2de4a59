"""Flask app for crowdworker studies, and the `percept` command line."""

from study_server.app import create_app

__all__ = ["create_app"]
