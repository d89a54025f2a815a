"""Errors lucidrl raises for bad input.

Each error says what is wrong and how to fix it. They subclass the built-in exception a
user would expect (``ValueError`` for bad values), so ``except ValueError`` still works.
The CLI prints them as one line, without a traceback.
"""

from __future__ import annotations


class LucidRLError(Exception):
    """Base class of every error lucidrl raises on purpose."""


class ConfigError(LucidRLError, ValueError):
    """An invalid hyperparameter value or combination."""


class EnvError(LucidRLError, ValueError):
    """An environment that cannot be built, or whose spaces an algorithm does not support."""


class CheckpointError(LucidRLError, ValueError):
    """A checkpoint that is missing, corrupt, incomplete, of another algorithm or too new."""


class MissingDependencyError(LucidRLError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that fixes it."""


class TrainingError(LucidRLError, RuntimeError):
    """Training cannot go on: an update produced a non-finite loss, gradient or weight."""
