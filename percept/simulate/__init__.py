"""Clients and harnesses of the study server: the scripted HTTP crowd, the load-and-fault
harness, and gunicorn run as a child process. The server itself never imports these."""
