"""Click options generated from the config dataclasses.

A flag is a config field with dashes (`batch_size` -> `--batch-size`); its
help text and choices come from the field. Every generated option defaults to
None ("not given"), so only flags the user typed override YAML and presets.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Any

import click

from trtq import config as cfg
from trtq.cli.command import LazyChoice, section_option
from trtq.cli.paths import CheckedPath, InputPath, InputPaths, OutputPath, data_path

# Fields only `trtq build` acts on: they need a quality gate, evaluation data or a Q/DQ model being
# built from calibration data. Commands that cannot act on them pass them to config_options(skip=...)
# so that their --help does not offer them (YAML files may still set them; they are then unused).
BUILD_ONLY = ("bias_correction", "fallback", "max_excluded", "smoothquant", "weight_rounding", "activation_ranges",
              "activation_shift",
              "equalization", "fast", "max_accuracy_loss")


# Help section of each config section's flags (trtq.cli.command prints one titled block per section).
SECTION_TITLES = {"data": "Data", "preprocess": "Preprocessing", "prepare": "Model preparation", "cluster": "Ray",
                  "calibration": "Calibration", "quantize": "Quantization", "build": "Engine",
                  "check": "Accuracy check"}
CONFIG_SECTION = "Config"
OUTPUT_SECTION = "Output"





def _path_type(kind: str) -> CheckedPath:
    """The checked click.Path of a config field's `path` kind (trtq.config._opt)."""
    from trtq.errors import CacheError, DataError

    if kind == "data":
        return data_path()
    if kind == "stats":
        return InputPaths("statistics file", CacheError, dir_okay=False,
                          hint="re-create it with 'trtq calibrate --save-stats' or remove it from {flag}")
    if kind == "labels":
        return InputPath("labels file", DataError, dir_okay=False, skip=("folders",),
                         hint="give a JSON or 'key index' text file, or 'folders' for one subfolder per class")
    return OutputPath(dir_okay=False)


def _click_type(tp: Any, f: dataclasses.Field[Any]) -> tuple[Any, bool]:
    """(click type, is_flag) for a field type."""
    if f.metadata.get("path"):
        return _path_type(f.metadata["path"]), False
    origin = typing.get_origin(tp)
    if origin is not None and origin is not list:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        return None, True
    if typing.get_origin(tp) is list:
        return str, False  # comma-separated; config coerces it into a list
    choices = f.metadata.get("choices")
    if callable(choices):
        return LazyChoice(choices), False
    if choices:
        return click.Choice(choices), False
    return {int: int, float: float, str: str}[tp], False


def shown_default(f: dataclasses.Field[Any], is_flag: bool) -> str | None:
    """The config default as --help shows it (flags default to None so that YAML files are not overridden)."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if default is None:
        return None  # the help text says what happens when it is not given
    if is_flag:
        return f.name.replace("_", "-") if default else "no-" + f.name.replace("_", "-")
    if isinstance(default, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or "none"
    return f"{default:g}" if isinstance(default, float) else str(default)


def _field_option(section: str, f: dataclasses.Field[Any], tp: Any, help_text: str | None,
                  title: str | None, required: bool = False) -> Callable[[Callable], Callable]:
    click_type, is_flag = _click_type(tp, f)
    flag = "--" + f.name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if is_flag else [flag]
    # a field with a flag_value takes its value optionally: `--ray` alone is `--ray local`
    optional = {"is_flag": False, "flag_value": f.metadata["flag_value"]} if f.metadata.get("flag_value") else {}
    return section_option(*decls, f.name, type=click_type, default=None, help=help_text or f.metadata["help"],
                          show_default=False, shown_default=shown_default(f, is_flag), shown_required=required,
                          section=title or SECTION_TITLES[section], **optional)


def config_options(*sections: str, skip: tuple[str, ...] = (), help_texts: Mapping[str, str] | None = None,
                   required: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator adding `--config`, `--print-config` and one flag per field of `sections`.

    Every boolean field is a `--name/--no-name` pair (the `--no-` form overrides a YAML file's `true`).

    Args:
        sections: config sections whose fields become flags, in this order.
        skip: field names to leave out (e.g. BUILD_ONLY); names not in `sections` are ignored.
        help_texts: field name -> help text of this command, where the field's own text does not fit it.
        required: fields help marks `[required]`; checked after the config files are read (a missing
            value is then a ConfigError, exit 2), since a file may give them.
    """
    help_texts = help_texts or {}

    def decorate(func: Callable) -> Callable:
        for section in reversed(sections):
            cls = cfg.SECTIONS[section]
            hints = typing.get_type_hints(cls)
            for f in reversed(dataclasses.fields(cls)):
                if f.name not in skip:
                    func = _field_option(section, f, hints[f.name], help_texts.get(f.name), None,
                                         f.name in required)(func)
        func = section_option("--print-config", is_flag=True, section=CONFIG_SECTION,
                              help="Print the resolved config as YAML and exit.")(func)
        func = section_option("-c", "--config", "config_files", multiple=True, metavar="FILE|PRESET",
                              section=CONFIG_SECTION,
                              help=f"YAML config or bundled preset ({', '.join(cfg.preset_names())}); "
                                   "repeatable, later ones win; flags win over all.")(func)
        return func

    return decorate


def field_options(*names: str, section: str, help_texts: Mapping[str, str] | None = None
                  ) -> Callable[[Callable], Callable]:
    """Decorator adding the flags of single config fields (by name) under the help `section`."""
    help_texts = help_texts or {}

    def decorate(func: Callable) -> Callable:
        for name in reversed(names):
            cls = cfg.SECTIONS[cfg.section_of(name)]
            f = next(f for f in dataclasses.fields(cls) if f.name == name)
            tp = typing.get_type_hints(cls)[name]
            func = _field_option(cfg.section_of(name), f, tp, help_texts.get(name), section)(func)
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
