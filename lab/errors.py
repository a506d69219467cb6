"""The errors a user can cause. The entry point prints them as one line, no traceback."""


def brief(error: BaseException) -> str:
    """An exception as a short phrase for a one-line message: its type and first sentence."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text.split('. ')[0]}".rstrip(": ")


class LabError(Exception):
    """A user-facing error: bad configuration, missing data, a wrong path."""


class ConfigError(LabError):
    """An invalid configuration value, detected before any training."""


class DataNotFoundError(LabError):
    """A dataset that is in none of the places the lab looks for it."""


class DataFileError(LabError):
    """A dataset file that is there but cannot be read (a cut download, a damaged copy)."""


class WeightsError(LabError):
    """Pre-trained weights that cannot be had: not downloadable here, or a file that does
    not fit the model."""
