"""The one exception the data layer raises for a file it cannot use."""

from __future__ import annotations

from pathlib import Path


class ScanError(ValueError):
    """A scan file that cannot be read correctly: the message names the file and the problem.

    A ``ValueError`` subclass so that callers which already treat bad values as user errors (the CLI
    prints them as one line) need no special case, while batch commands can catch exactly this type,
    report it and go on with the other files.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = "<in memory>" if path is None else str(path)
        super().__init__(f"{where}: {problem}")
