"""Exceptions raised for bad input; their message is what a user sees."""

from __future__ import annotations


class WssegError(Exception):
    """Base of every error wsseg reports to a user (never shown with a traceback)."""


class BadInputError(WssegError):
    """A file or value given by the user is not what was expected.

    ``source`` names the file or value, ``problem`` says what is wrong and what was expected.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self) -> tuple[type[BadInputError], tuple[str, str]]:
        # Rebuilt from both fields: a worker process's error must reach the parent as itself.
        return type(self), (self.source, self.problem)


class DataNotFoundError(WssegError):
    """A dataset folder the user pointed at (or the default one) does not exist."""
