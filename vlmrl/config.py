"""Config dataclasses: the single place a command's options and their help text are written.

A command is declared once as a dataclass whose fields carry help text (`option(...)`);
`command(app, ConfigClass)` turns it into a typer command with one flag per field plus
`--config FILE` (YAML). Flags given on the command line win over the YAML file, which wins
over the dataclass defaults. The resolved config is saved with every run.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config file or value does not fit the command's config dataclass."""


def option(default: Any = dataclasses.MISSING, *, help: str, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with help text; `factory` for mutable defaults (lists)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:
            return arguments[0], True
    return annotation, False


def _coerce(name: str, annotation: Any, value: Any, source: str) -> Any:
    """Convert a YAML value to the field's type, or raise an error naming the field."""
    base, optional = _unwrap_optional(annotation)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: '{name}' is null but expects {getattr(base, '__name__', base)}")
    origin = typing.get_origin(base)
    try:
        if origin in (list, tuple):
            (item_type,) = typing.get_args(base)[:1] or (str,)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            items = [_coerce(name, item_type, v, source) for v in value]
            return items if origin is list else tuple(items)
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        if base is Path:
            return Path(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{source}: '{name}' = {value!r} is not a valid {getattr(base, '__name__', str(base))}")


def from_dict(config_class: type[ConfigT], values: dict[str, Any], source: str = "config") -> ConfigT:
    """Build a config from a mapping, rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: expected a mapping of option names to values, got {type(values).__name__}"
        )
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown}; known options are {sorted(known)}")
    coerced = {k: _coerce(k, hints[k], v, source) for k, v in values.items()}
    return config_class(**coerced)


def load_yaml(config_class: type[ConfigT], path: str | Path) -> ConfigT:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    return from_dict(config_class, values, source=str(path))


def to_dict(config: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def _typer_annotation(annotation: Any) -> Any:
    base, optional = _unwrap_optional(annotation)
    if typing.get_origin(base) is tuple:
        base = list[typing.get_args(base)[0]]
    return base | None if optional else base


def resolve_config_path(value: str | Path, configs_directory: str | Path | None = None) -> Path:
    """`--config` as given: an existing file, else a bundled config NAME (`NAME.yaml` in
    `configs_directory`); otherwise an error that lists the bundled names."""
    path = Path(value)
    if path.is_file() or configs_directory is None:
        return path
    directory = Path(configs_directory)
    for candidate in (directory / str(value), directory / f"{value}.yaml"):
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []
    raise ConfigError(
        f"config {value} is neither a file nor a bundled config (bundled: {', '.join(names) or 'none'})"
    )


def command(
    app: Any,
    config_class: type[ConfigT],
    name: str | None = None,
    help: str | None = None,
    configs_directory: str | Path | None = None,
):
    """Register `function(config)` on a typer app with one flag per config field.

    With `configs_directory`, `--config NAME` also loads a bundled `NAME.yaml` from it."""
    try:  # typer >= 0.23 runs on its own vendored click, whose context is not the external one's
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
        from click.core import ParameterSource
    import typer

    hints = typing.get_type_hints(config_class)

    def decorator(function: Callable[[ConfigT], Any]) -> Callable[[ConfigT], Any]:
        parameters = [
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    None,
                    "--config",
                    help="YAML file with option values"
                    + (" (or a bundled config's name)" if configs_directory else "")
                    + "; flags given here win.",
                ),
                annotation=Path | None,
            )
        ]
        for field in dataclasses.fields(config_class):
            if field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = field.default_factory()  # type: ignore[misc]
            else:
                default = ...
            flag = "--" + field.name.replace("_", "-")
            base, _ = _unwrap_optional(hints[field.name])
            declarations = [f"{flag}/--no-{field.name.replace('_', '-')}"] if base is bool else [flag]
            parameters.append(
                inspect.Parameter(
                    field.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(default, *declarations, help=field.metadata.get("help", "")),
                    annotation=_typer_annotation(hints[field.name]),
                )
            )

        def run(**kwargs: Any) -> Any:
            config_file = kwargs.pop("config_file")
            context = get_current_context()
            values: dict[str, Any] = {}
            if config_file is not None:
                try:
                    values = to_dict(
                        load_yaml(config_class, resolve_config_path(config_file, configs_directory))
                    )
                except ConfigError as error:  # a usage error, not a traceback
                    raise typer.BadParameter(str(error), param_hint="'--config'") from error
            for key, value in kwargs.items():
                given = context.get_parameter_source(key) == ParameterSource.COMMANDLINE
                if given or key not in values:
                    values[key] = value
            try:
                config = from_dict(config_class, values, source="command line")
            except ConfigError as error:
                raise typer.BadParameter(str(error)) from error
            return function(config)

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__name__ = function.__name__
        run.__doc__ = help or function.__doc__ or config_class.__doc__
        app.command(name or function.__name__.replace("_", "-"), help=run.__doc__)(run)
        return function

    return decorator
