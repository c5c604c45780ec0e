"""Errors with a message meant for the user (exit code 2, no traceback)."""


class UserError(Exception):
    """Bad input from the user: unknown name, malformed preset, missing dataset.

    The CLI prints the message on one line and exits with code 2, before anything is written.
    """
