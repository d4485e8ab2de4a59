"""Production entry point: `gunicorn -c study_server/gunicorn.conf.py study_server.wsgi:app`.

Settings come from the environment (DATABASE_URL, SECRET_KEY, PERCEPT_*); a
missing or default SECRET_KEY, or a database without the current schema (run
`percept db upgrade`), stops the server before it serves anyone.
"""

from study_server import create_app
from study_server.schema import require_current_schema

app = create_app({"PRODUCTION": True})
require_current_schema(app)
