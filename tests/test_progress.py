"""The shared progress bar (llava.progress): drawn when stderr is a terminal, silent when it is not."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

COUNT_TO_FIVE = """
from llava.progress import progress_bar
for _ in progress_bar(range(5), desc="counting", quiet={quiet}):
    pass
print("done")
"""


def run(stderr, quiet=False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", COUNT_TO_FIVE.format(quiet=quiet)], stdout=subprocess.PIPE,
                          stderr=stderr, text=True, timeout=120)


def read_terminal(quiet: bool) -> str:
    """Run with stderr on a pseudo-terminal of 24 x 100 characters (a new one is 0 x 0, where tqdm draws an empty
    bar); what the terminal received."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        result = run(secondary, quiet)
        os.close(secondary)
        received = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(primary)
    assert result.returncode == 0 and result.stdout == "done\n"
    return received.decode(errors="replace")


def test_a_bar_is_drawn_on_a_terminal():
    shown = read_terminal(quiet=False)
    assert "counting" in shown and "5/5" in shown


def test_quiet_hides_it_on_a_terminal():
    assert read_terminal(quiet=True) == ""


def test_nothing_is_written_when_stderr_is_not_a_terminal():
    result = run(subprocess.PIPE)
    assert result.returncode == 0 and result.stdout == "done\n"
    assert result.stderr == ""
