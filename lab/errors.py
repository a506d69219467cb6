"""The errors a user can cause. The entry point prints them as one line, no traceback."""


class LabError(Exception):
    """A user-facing error: bad configuration, missing data, a wrong path."""


class ConfigError(LabError):
    """An invalid configuration value, detected before any training."""


class DataNotFoundError(LabError):
    """A dataset that is in none of the places the lab looks for it."""
