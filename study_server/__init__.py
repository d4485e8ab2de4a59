"""Flask app for crowdworker studies (issue 4) and the `percept` command line."""
