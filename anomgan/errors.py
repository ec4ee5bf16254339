"""Typed errors. Library code raises these; the CLI turns them into one line and an exit code.

A message speaks the library's language (parameters, functions); where the command line says it differently
(flags, commands), ``cli`` carries that wording and the CLI prints it instead.
"""

from __future__ import annotations

from typing import Optional


class AnomganError(Exception):
    """Base class: the message is a complete, one-line explanation for a user."""

    exit_code = 2

    def __init__(self, message: str, cli: Optional[str] = None):
        super().__init__(message)
        self.cli_message = cli or message


class ConfigError(AnomganError, ValueError):
    """An unknown config key or an invalid value."""


class DataError(AnomganError, ValueError):
    """Input data that cannot be read or does not match what the run expects."""


class RunError(AnomganError):
    """A run directory or checkpoint that is missing, corrupt, untrusted or incompatible."""


class OutputError(AnomganError):
    """An output path that cannot be written, or would overwrite a file without force."""


class TrainingDiverged(AnomganError):
    """Losses became NaN/inf; the last good checkpoint is kept."""
