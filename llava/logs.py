"""What the project's commands let third-party libraries print.

FFmpeg (through PyAV) logs from C straight to the terminal: a damaged video can print a line per broken packet.
Every front end silences it by default and shows it with --verbose:

    python -m llava.serve.cli --video-file broken.mp4 --query "hi" --verbose
"""

from __future__ import annotations


def set_media_logging(verbose: bool) -> None:
    """verbose: FFmpeg prints its own lines (VERBOSE level and above) on stderr, as the ffmpeg tool does;
    otherwise every FFmpeg line is dropped (PyAV's default), so a bad video ends in the command's one
    `error: ...` line alone. FFmpeg's logging is one setting per process: the last call wins."""
    import av.logging  # not at import time: PyAV loads FFmpeg

    if verbose:
        av.logging.restore_default_callback()  # FFmpeg's own printer, writing to file descriptor 2
        av.logging.set_libav_level(av.logging.VERBOSE)
    else:
        av.logging.set_level(None)  # PyAV's callback that drops every line
