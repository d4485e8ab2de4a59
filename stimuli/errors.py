"""The one exception type for problems a user can fix."""


class PerceptError(Exception):
    """A problem the user can fix: the CLI prints its message alone and exits 2.

    The message says what went wrong, where (file, key, row) and what to do.
    Every package of percept raises this for user errors; it lives here because
    `stimuli` is the package the others may all import.
    """
