"""User-facing errors.

Every error caused by bad input (a config value, a file, an address) is raised as
``UserError`` with a one-line message that names the bad value and what is
allowed. The CLI prints it as ``error: <message>`` and exits with code 2.
"""


class UserError(ValueError):
    """Bad input: the message is one line naming the value and what is allowed.

    ``path``: the dotted config key of the bad value (e.g. ``partition.distribution.share``)
    when the error is about a config value; widgets show the message beside that field.
    """

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(" ".join(str(message).split()))
        self.path = path


class DataError(UserError):
    """A data file or archive is missing, truncated, corrupt or of the wrong layout."""


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, or belongs to another experiment."""


class RunStalled(RuntimeError):
    """A run that folded no update for ``grid.max_rounds_without_update`` rounds: one line
    naming the cause (``fedjax_grid.runner.stall``); the CLI prints it and exits with 3."""


#: Longest value echoed back in an error message (characters).
SHOW_MAX = 80


def show(value, limit: int = SHOW_MAX) -> str:
    """``repr(value)`` for an error message: one line, at most ``limit`` characters
    (longer ones end in '…' and say how long the value was)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    n = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[:limit - 1]}…({n} characters)"


def show_path(path, limit: int = 160) -> str:
    """A file or folder name for an error message: ``repr`` of it, shortened in the
    middle (keeping its end, the file name) when longer than ``limit`` characters."""
    text = repr(str(path))
    if len(text) <= limit:
        return text
    keep = limit - 45
    return f"{text[:40]}…{text[-keep:]}({len(str(path))} characters)"
