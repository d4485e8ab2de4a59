"""Text a participant sends, cleaned before it is stored: no control characters.

A user agent or an `invalid_reason` with ESC sequences, tabs or line breaks in it
would reach the export and, from there, terminals and spreadsheets. NUL is not
removed here: `responses.storable` refuses it, as it always did.
"""

from __future__ import annotations

import re

# C0 controls other than NUL, DEL, and the C1 controls (Unicode category Cc).
CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """The text without control characters (ESC, TAB, CR, LF, DEL, C1, ...)."""
    return CONTROL.sub("", text)
