"""Click options generated from the config dataclasses.

A flag is a config field with dashes (`batch_size` -> `--batch-size`); its
help text and choices come from the field. Every generated option defaults to
None ("not given"), so only flags the user typed override YAML and presets.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import click

from trtq import config as cfg

# Fields only `trtq build` acts on: they need a quality gate, evaluation data or a Q/DQ model being
# built from calibration data. Commands that cannot act on them pass them to config_options(skip=...)
# so that their --help does not offer them (YAML files may still set them; they are then unused).
BUILD_ONLY = ("bias_correction", "fallback", "max_excluded", "smoothquant", "weight_rounding", "equalization", "fast")


def _click_type(tp: Any, choices: tuple[str, ...] | None) -> tuple[Any, bool]:
    """(click type, is_flag) for a field type."""
    origin = typing.get_origin(tp)
    if origin is not None and origin is not list:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        return None, True
    if typing.get_origin(tp) is list:
        return str, False  # comma-separated; config coerces it into a list
    if choices:
        return click.Choice(choices), False
    return {int: int, float: float, str: str}[tp], False


def config_options(*sections: str, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator adding `--config`, `--print-config` and one flag per field of `sections`.

    Args:
        sections: config sections whose fields become flags, in this order.
        skip: field names to leave out (e.g. BUILD_ONLY); names not in `sections` are ignored.
    """

    def decorate(func: Callable) -> Callable:
        for section in reversed(sections):
            cls = cfg.SECTIONS[section]
            hints = typing.get_type_hints(cls)
            for f in reversed(dataclasses.fields(cls)):
                if f.name in skip:
                    continue
                click_type, is_flag = _click_type(hints[f.name], cfg.field_choices(f))
                flag = "--" + f.name.replace("_", "-")
                if is_flag:
                    decl = f"{flag}/--no-{flag[2:]}"
                    func = click.option(decl, f.name, default=None, help=f.metadata["help"])(func)
                elif f.metadata.get("flag_value"):  # the value is optional: `--ray` alone is `--ray local`
                    func = click.option(flag, f.name, type=click_type, is_flag=False, default=None,
                                        flag_value=f.metadata["flag_value"], help=f.metadata["help"])(func)
                else:
                    func = click.option(flag, f.name, type=click_type, default=None,
                                        help=f.metadata["help"])(func)
        func = click.option("--print-config", is_flag=True,
                            help="Print the resolved config as YAML and exit.")(func)
        func = click.option("-c", "--config", "config_files", multiple=True, metavar="FILE|PRESET",
                            help=f"YAML config or bundled preset ({', '.join(cfg.preset_names())}); "
                                 "repeatable, later ones win; flags win over all.")(func)
        return func

    return decorate


def resolve_config(params: dict[str, Any]) -> cfg.Config:
    """Build the Config from a command's params; pops the config-related keys."""
    files = params.pop("config_files", ())
    params.pop("print_config", None)
    field_names = {f.name for cls in cfg.SECTIONS.values() for f in dataclasses.fields(cls)}
    overrides = {k: params.pop(k) for k in list(params) if k in field_names}
    if "out_dir" in params:
        overrides["out_dir"] = params.pop("out_dir")
    return cfg.load_config(files, overrides)


def print_config_and_exit(ctx: click.Context, config: cfg.Config) -> None:
    click.echo(cfg.to_yaml(config), nl=False)
    ctx.exit(0)
