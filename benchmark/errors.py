"""Errors with a message meant for the user (exit code 2, no traceback)."""
import traceback
from pathlib import Path


class UserError(Exception):
    """Bad input from the user: unknown name, malformed preset, missing dataset.

    The CLI prints the message (one line per problem) and exits with code 2, before anything is written.
    """


def short_error(err: BaseException) -> str:
    """One line: the exception and where in the project (or a submitted file) it was raised."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "site-packages" not in f.filename]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{where}".replace("\n", " ")
