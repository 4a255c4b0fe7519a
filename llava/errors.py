"""The project's error types: user mistakes end in one clear line, never a traceback."""


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
