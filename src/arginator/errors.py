"""Errors a user can act on. The CLI prints their message as one line and exits non-zero, without a traceback."""


class ArginatorError(Exception):
    """Base class for problems caused by the user's input, files or configuration."""


class ConfigError(ArginatorError, ValueError):
    """A configuration file or override is malformed, has an unknown key or a wrongly typed value."""


class DataError(ArginatorError, ValueError):
    """An embedding or label file is unreadable, inconsistent or does not match what the run expects."""
