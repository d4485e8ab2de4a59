"""Production entry point: `gunicorn -c study_server/gunicorn.conf.py study_server.wsgi:app`.

Settings come from the environment (DATABASE_URL, SECRET_KEY, PERCEPT_*); a
missing or default SECRET_KEY stops the server before it serves anyone.
"""

from study_server import create_app

app = create_app({"PRODUCTION": True})
