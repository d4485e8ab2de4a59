"""What a participant may send as identifiers, and the form of the ids the server hands out.

The participant views check requests against these and the OpenAPI document
describes them from the same objects, so both import this module (and neither
imports the other for them).
"""

from __future__ import annotations

import re

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
# Only MTurk's own hosts may receive the completion form (no open redirect).
MTURK_HOSTS = re.compile(r"^https://(www|workersandbox)\.mturk\.com/?$")
PLATFORM_FIELDS = {
    "prolific": ("prolific_pid", "study_id", "session_id"),
    "mturk": ("worker_id", "assignment_id", "hit_id", "turk_submit_to"),
    "link": ("client_id",),
}
ID_TEXT = re.compile(r"^[A-Za-z0-9._~:/+=-]{1,200}$")
# Image ids as studies.py makes them (secrets.token_urlsafe): anything else is not looked up.
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Platform id formats, checked at sign-up unless recruitment.check_platform_ids is false.
PROLIFIC_ID = re.compile(r"^[0-9a-fA-F]{24}$")
MTURK_WORKER_ID = re.compile(r"^A[A-Z0-9]{12,199}$")
