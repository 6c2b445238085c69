"""The `trtq` console script: imports the CLI inside a Ctrl-C handler, so an interrupt while the
(heavy: onnx, numpy, click) imports run exits 130 with one line instead of a traceback."""

from __future__ import annotations

import sys


def run() -> None:
    """Entry point of the `trtq` command (pyproject [project.scripts])."""
    try:
        from trtq.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted while starting; nothing was written\n")
        sys.exit(130)  # trtq.errors.EXIT_INTERRUPTED (not imported: the interrupt may have hit its import)
    main()
