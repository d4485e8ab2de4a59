"""gunicorn settings for the study server; each may be overridden on the command line."""

import multiprocessing
import os

bind = os.environ.get("PERCEPT_BIND", "127.0.0.1:8000")
# Threads serve many slow crowdworker connections per process; requests are short.
workers = int(os.environ.get("PERCEPT_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("PERCEPT_THREADS", 4))
timeout = 30
graceful_timeout = 30
# Responses carry no secrets in headers, but a proxy in front should set X-Forwarded-*.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"
