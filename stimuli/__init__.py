"""Stimuli: a researcher's image folders in, a clean, leak-proof stimulus folder out."""

from stimuli.build import ingest
from stimuli.leaks import audit

__all__ = ["audit", "ingest"]
