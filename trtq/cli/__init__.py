"""The `trtq` command line. It only parses options and calls the Python API.

Each subcommand lives in its own module and registers itself on `main`.
Errors: a TrtqError prints one `error: ...` line and exits with its code;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import errno
import logging
import sys

import click

from trtq import atomic
from trtq._version import __version__
from trtq.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_USAGE, TrtqError

# errno values that mean "the output cannot be written", whatever wrote it (disk full, quota, read-only, size limit).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _kept() -> str:
    """What a failed run leaves: no half-written file ever (trtq.atomic), and the files it completed."""
    done = atomic.completed_files()
    if not done:
        return "no output was written"
    names = ", ".join(str(p) for p in done[:6]) + (f" and {len(done) - 6} more" if len(done) > 6 else "")
    return f"no file was left half-written; kept the {len(done)} file(s) completed before: {names}"


def _bounded(text: str, limit: int = 1000) -> str:
    """One line of at most `limit` characters, whatever a message quotes from a user's file."""
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} chars)"


class _TrtqGroup(click.Group):
    """A click group that turns trtq errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        debug = bool(ctx.params.get("debug"))
        atomic.reset_completed()
        try:
            return super().invoke(ctx)
        except TrtqError as exc:
            if debug:
                raise
            kept = f" ({_kept()})" if atomic.completed_files() else ""
            click.secho(f"error: {_bounded(exc.one_line())}{kept}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.secho(f"error: interrupted; {_kept()}", fg="red", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:  # an I/O failure no trtq module turned into its own error
            if debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.secho(f"error: {where}{exc.strerror or exc}; {_kept()}", fg="red", err=True)
            ctx.exit(EXIT_OUTPUT if exc.errno in _WRITE_ERRNOS else EXIT_BAD_INPUT)


@click.group(cls=_TrtqGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trtq")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """trtq: calibrate an FP32 ONNX model on real data and produce a TensorRT
    INT8/FP8 deployment (calibration cache, Q/DQ model, engine, accuracy report).

    \b
    Exit codes: 0 ok, 1 accuracy gate failed, 2 usage or config error,
    3 missing dependency or device, 4 bad model or data, 5 output cannot be
    written, 130 interrupted.
    """
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def _register() -> None:
    """Import every `trtq/cli/*_cmd.py`; each registers its command on `main`.

    Imported here, after `main` exists, so command modules can import it.
    """
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"{__name__}.{info.name}")


_register()

__all__ = ["EXIT_USAGE", "main"]
