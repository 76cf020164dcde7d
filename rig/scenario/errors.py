"""`ScenarioError`: one precise, file-located problem in a scenario."""
from __future__ import annotations

__all__ = ["ScenarioError"]


class ScenarioError(ValueError):
    """A bad scenario.  ``str(err)`` is ``FILE:LINE: FIELD: PROBLEM`` (``FILE: FIELD: PROBLEM`` when
    no line is known, e.g. a scenario given as a dict or a file that does not exist).

    ``file``: the path as given (or ``<scenario>``); ``line``: 1-based line of the offending key or
    list item, or None; ``field``: dotted path such as ``chargers[2] (cp3).profile``; ``problem``:
    what is wrong.  When validation found several problems, ``errors`` lists all of them in file
    order (this one first); otherwise it is ``[self]``.
    """

    def __init__(self, file: str | None, line: int | None, field: str, problem: str):
        self.file = file or "<scenario>"
        self.line = line
        self.field = field
        self.problem = problem
        self.errors: list[ScenarioError] = [self]
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {problem}")

    def __reduce__(self):  # picklable (multiprocessing runners, Dask workers), subclasses too
        return (type(self), (self.file, self.line, self.field, self.problem))
