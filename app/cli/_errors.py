"""Exit codes, and the one- or two-line errors the CLI prints in place of a traceback (``--debug`` shows it)."""

from __future__ import annotations

import sys
import traceback

OK = 0
FAILED = 1  # the request or the job failed
USAGE = 2  # the command line is wrong (click's own code for usage errors)
UNREACHABLE = 3  # the gateway cannot be reached
CANCELLED = 4  # a followed job ended cancelled: not a failure, not a model either
INTERRUPTED = 130  # Ctrl-C stopped following; the job goes on

EXIT_CODES = {
    OK: "success",
    FAILED: "the request or the job failed",
    USAGE: "usage error (a wrong option or argument)",
    UNREACHABLE: "cannot reach the gateway",
    CANCELLED: "the followed job was cancelled",
    INTERRUPTED: "Ctrl-C stopped following (the job goes on)",
}


class CliError(Exception):
    """What failed and the server's message (one line), then what to do about it (one line, optional)."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def show(self, *, debug: bool = False) -> None:
        if debug:
            traceback.print_exception(self, file=sys.stderr)
        print(f"Error: {self.message}", file=sys.stderr)
        if self.hint:
            print(self.hint, file=sys.stderr)
