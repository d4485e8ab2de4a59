"""The one exception type for problems a user can fix."""


class PerceptError(Exception):
    """A problem the user can fix: the CLI prints its message alone and exits 2.

    The message says what went wrong, where (file, key, row) and what to do.
    Every layer of percept (stimuli, study_server, analysis) raises this for user
    errors; it lives in the product package, which every layer may import for it.
    """
