"""The project's error types: user mistakes end in one clear line, never a traceback."""

import sys


class LlavaError(Exception):
    """Base class of every error the project raises for bad input or bad files."""


class VideoError(LlavaError):
    """A video (or image, or frame folder) cannot be opened or decoded; the message names the file."""


class CheckpointError(LlavaError):
    """A checkpoint folder is missing, incomplete, corrupted or does not match its config."""


class DataError(LlavaError):
    """A data file (conversation JSON, benchmark file) is malformed; the message names the row."""


class ConfigError(LlavaError):
    """A configuration value is invalid or unknown; the message lists the valid ones."""


def report_error(err: BaseException) -> int:
    """Print `err` as one line `error: ...` on stderr (its lines joined; its type's name when it has no
    message) and return the exit code 1."""
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"error: {message}", file=sys.stderr)
    return 1
