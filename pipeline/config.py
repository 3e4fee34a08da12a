"""The build configuration: the operators' own config dataclasses, combined and loaded once.

YAML plus ``--set dotted.key=value`` overrides become one frozen ``BuildConfig``. Unknown keys
and values of the wrong type are errors that name the dotted key. The canonical JSON dump of
that object is what the manifest fingerprints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from operators.dedup import DedupConfig
from operators.normalize import NormalizeConfig
from operators.read import ReadConfig
from operators.segment import SegmentConfig
from operators.tokenize import TokenizeConfig
from operators.write import WriteConfig


class ConfigError(ValueError):
    """A config the build cannot use; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class BuildConfig:
    inputs: tuple[str, ...]
    output: str
    read: ReadConfig = field(default_factory=ReadConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    write: WriteConfig = field(default_factory=WriteConfig)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("needs at least one path, glob or URI")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, section: str | None = None) -> str:
        """sha256 of the canonical dump of the whole config, or of one section."""
        data = self.to_dict() if section is None else self.to_dict()[section]
        return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BuildConfig:
    """Read YAML, apply ``dotted.key=value`` overrides (values parsed as YAML), build the dataclasses."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    for override in overrides:
        set_dotted(data, override)
    return build(BuildConfig, data, prefix="")


def set_dotted(data: dict[str, Any], override: str) -> None:
    """Apply one ``--set dotted.key=value`` to the config mapping (the value parsed as YAML; empty is null)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set takes dotted.key=value, got {override!r}")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a section")
    node[leaf] = yaml.safe_load(value) if value.strip() else None


def build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursively, naming the key of any error."""
    section = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown config key: {prefix}{key}")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"{section}: {error}") from None
    except ValueError as error:
        raise ConfigError(f"{section}: {error}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, prefix=f"{key}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(inner, value, key)
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{key} must be a list, not {type(value).__name__}")
        return tuple(_coerce(args[0], item, key) for item in items)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {hint.__name__}, not {type(value).__name__} ({value!r})")
    return value
