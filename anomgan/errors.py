"""Typed errors. Library code raises these; the CLI turns them into one line and an exit code."""


class AnomganError(Exception):
    """Base class: the message is a complete, one-line explanation for a user."""

    exit_code = 2


class ConfigError(AnomganError):
    """An unknown config key or an invalid value."""


class DataError(AnomganError):
    """Input data that cannot be read or does not match what the run expects."""


class RunError(AnomganError):
    """A run directory or checkpoint that is missing, corrupt, untrusted or incompatible."""


class OutputError(AnomganError):
    """An output path that cannot be written, or would overwrite a file without --force."""


class TrainingDiverged(AnomganError):
    """Losses became NaN/inf; the last good checkpoint is kept."""


class NotFittedError(AnomganError):
    """A detector method that needs a trained model was called before fit/load."""
