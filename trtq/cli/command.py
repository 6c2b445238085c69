"""The click classes every trtq command is made of: titled option sections, examples, global flags anywhere.

click has no option groups. Like Polygraphy's argument groups (each group a titled help section), an
option names its section (`section_option(..., section="Output")`, or the config section it comes from,
see trtq.cli.options); `TrtqCommand.format_options` prints one titled block per section, in the order the
sections first appear, then the `Global options`. Options without a section go under `Options`.

`-q/--quiet` and `--debug` belong to `trtq` itself, but users type them after the subcommand too
(`trtq build ... -q`): every TrtqCommand accepts them there and applies them the same way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import click

OTHER_SECTION = "Options"
GLOBAL_SECTION = "Global options"


class SectionOption(click.Option):
    """A click option that says which help section it belongs to.

    Args:
        section: the help section's title.
        shown_default: the default as help shows it, for options whose click default is None ("not
            given") because the real default comes from elsewhere (the config, trtq.cli.options).
        shown_required: mark it `[required]` although click does not enforce it (a config file may give it).
    """

    def __init__(self, *args: Any, section: str | None = None, shown_default: str | None = None,
                 shown_required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section
        self.shown_default = shown_default
        self.shown_required = shown_required

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.shown_default is not None:
            extra["default"] = self.shown_default
        if self.shown_required:
            extra["required"] = "required"
        return extra


def section_option(*decls: str, section: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`click.option` whose help line goes under the titled `section`."""
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


def set_quiet(ctx: click.Context, quiet: bool) -> None:
    """-q: warnings and errors only, no progress bars (trtq's group and every subcommand call this)."""
    obj = ctx.find_root().ensure_object(dict)
    obj["quiet"] = obj.get("quiet", False) or quiet
    if quiet and not obj.get("debug"):
        logging.getLogger().setLevel(logging.WARNING)


def set_debug(ctx: click.Context, debug: bool) -> None:
    """--debug: tracebacks instead of one-line errors, and debug logs."""
    obj = ctx.find_root().ensure_object(dict)
    obj["debug"] = obj.get("debug", False) or debug
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)


def _global_flags() -> list[click.Option]:
    """The group's -q and --debug, accepted after a subcommand too."""
    def quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        set_quiet(ctx, value)

    def debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        set_debug(ctx, value)

    return [
        SectionOption(["-q", "--quiet"], is_flag=True, expose_value=False, callback=quiet, section=GLOBAL_SECTION,
                      help="Only warnings and errors; no progress bars (also before the command: trtq -q ...)."),
        SectionOption(["--debug"], is_flag=True, expose_value=False, callback=debug, section=GLOBAL_SECTION,
                      help="Show tracebacks and debug logs."),
    ]


class LazyChoice(click.Choice):
    """A click.Choice whose values are computed when first needed: `trtq --help` should not pay for the imports
    behind them (the method registry imports numpy and every range algorithm)."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load: Callable[[], Sequence[str]] | None = load
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        if self._load is not None:
            self._values, self._load = tuple(self._load()), None
        return self._values

    @choices.setter
    def choices(self, values: Sequence[str]) -> None:
        self._values = tuple(values)


class TrtqCommand(click.Command):
    """A command with titled option sections, an `Examples` block from its epilog, and the global flags.

    Args:
        examples: command lines shown at the end of --help, one per line (a `# comment` line may precede one).
    """

    def __init__(self, *args: Any, examples: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.examples = inspect.cleandoc(examples) if examples else None
        names = {name for p in self.params for name in p.opts}
        self.params += [flag for flag in _global_flags() if not names & set(flag.opts)]

    def invoke(self, ctx: click.Context) -> Any:
        """Check the path parameters (trtq.cli.paths) before the command runs; --print-config reads none."""
        if not ctx.params.get("print_config"):
            from trtq.cli.paths import check_paths

            check_paths(ctx)
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):
                continue
            title = getattr(param, "section", None) or OTHER_SECTION
            sections.setdefault(title, []).append(record)
        ordered = [t for t in sections if t not in (OTHER_SECTION, GLOBAL_SECTION)]
        for title in [*ordered, OTHER_SECTION, GLOBAL_SECTION]:
            if title in sections:
                with formatter.section(title):
                    formatter.write_dl(sections[title])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.examples:
            with formatter.section("Examples"):
                for line in self.examples.splitlines():  # as written: command lines must not be re-wrapped
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


class TrtqGroup(click.Group):
    """A group whose commands (and subgroups' commands) are TrtqCommands."""

    command_class = TrtqCommand


TrtqGroup.group_class = TrtqGroup  # subgroups (trtq cache ...) make TrtqCommands too
