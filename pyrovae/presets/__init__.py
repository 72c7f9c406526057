"""The papers' protocols as config presets: ``pyrovae train --preset NAME`` (or a TOML file).

A preset is a TOML file of config keys (architecture, optimizer, schedule, batch size, data and
evaluation as the paper ran them); the files ship in this folder, one per protocol, each opening
with the paper and what it sets. A config file and flags override a preset's keys.
"""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ..textfile import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def names() -> list[str]:
    """The presets that ship with pyrovae."""
    return sorted(p.name[: -len(".toml")] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The config keys of the preset ``name`` (a shipped preset, or a path to a TOML file)."""
    if name in names():
        text, where = resources.files(__package__).joinpath(f"{name}.toml").read_text(), f"preset {name!r}"
    elif name.endswith(".toml"):
        text, where = read_text(name, "preset file"), f"preset file {name}"
    else:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(names())}, or a .toml file of config keys")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}") from e
    if "preset" in values:
        raise ConfigError(f"{where} names another preset; a preset holds config keys only")
    return values
