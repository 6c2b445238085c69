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
from trtq.cli.command import TrtqGroup, set_debug, set_quiet
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


class _TrtqMain(TrtqGroup):
    """trtq's group: turns trtq errors into one line and an exit code (--debug, before or after the
    subcommand, shows the traceback instead)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        atomic.reset_completed()

        def debug() -> bool:
            return bool((ctx.obj or {}).get("debug"))

        try:
            return super().invoke(ctx)
        except TrtqError as exc:
            if debug():
                raise
            kept = f" ({_kept()})" if atomic.completed_files() else ""
            click.secho(f"error: {_bounded(exc.one_line())}{kept}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug():
                raise
            click.secho(f"error: interrupted; {_kept()}", fg="red", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:  # an I/O failure no trtq module turned into its own error
            if debug():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.secho(f"error: {where}{exc.strerror or exc}; {_kept()}", fg="red", err=True)
            ctx.exit(EXIT_OUTPUT if exc.errno in _WRITE_ERRNOS else EXIT_BAD_INPUT)


class _LogFormatter(logging.Formatter):
    """`LEVEL: message`, with the prefix on every line of a multi-line message (so that each line of
    the console reads the same way, e.g. the data plan's `calibration:` and `evaluation:` lines)."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname}: "
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


class _OnceFilter(logging.Filter):
    """Drops an info/debug line identical to one already printed by this command: steps that run many
    times (a fallback quantizes the model once per trial) would otherwise repeat the same note."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter("%(message)s"))
    handler.addFilter(_OnceFilter())
    logging.basicConfig(level=level, handlers=[handler])  # no-op where the root logger has handlers already


@click.group(cls=_TrtqMain, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                              "show_default": True})
@click.version_option(__version__, prog_name="trtq")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs (also after the command).")
@click.option("-q", "--quiet", is_flag=True,
              help="Only warnings and errors; no progress bars (also after the command).")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """trtq: calibrate an FP32 ONNX model on real data and produce a TensorRT
    INT8/FP8 deployment (calibration cache, Q/DQ model, engine, accuracy report).

    \b
    Exit codes: 0 ok, 1 accuracy gate failed, 2 usage or config error,
    3 missing dependency or device, 4 bad model or data, 5 output cannot be
    written, 130 interrupted.
    """
    _configure_logging(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO))
    ctx.ensure_object(dict)
    set_debug(ctx, debug)
    set_quiet(ctx, quiet)


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
