"""The Flask app for crowdworker studies (the `percept` command line is in percept.cli)."""

from study_server.app import create_app

__all__ = ["create_app"]
