"""What defines a run, recorded when it starts (``identity.json``) and checked when it resumes.

A run is its config (every key but those a resumed run may change, :data:`RESUMABLE`), the data it
trains on (the values' fingerprint, :meth:`pyrovae.data.Images.fingerprint`) and the checkpoints it
writes (each carries the run's id). ``--resume`` refuses a run whose ``config.toml`` was edited,
whose data changed or whose checkpoint is another run's, in one line that lists what changed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..config import Config, toml_value
from ..data import Images
from ..errors import ConfigError
from ..textfile import read_text
from ..version import VERSION
from .directory import RunDir
from .parts import plugins_of

# Settings a resumed run may change; everything else must match the run's own config.
RESUMABLE = frozenset(
    {
        "epochs",
        "max_steps",
        "max_seconds",
        "device",
        "log_every",
        "compile",
        "eval_num_samples",
        "eval_chunk_size",
        "eval_batch_size",
        "tracking",
        "tracking_uri",
    }
)


def defining(cfg: Config) -> dict[str, Any]:
    """The config keys that define a run: all but :data:`RESUMABLE`."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE}


def new_identity(cfg: Config, images: Images) -> dict[str, Any]:
    """A new run's identity: its id, pyrovae's version, the defining config, the data's fingerprint
    and the plugins it uses (import path, version, source hash)."""
    return {
        "run_id": uuid.uuid4().hex,
        "pyrovae": VERSION,
        "config": defining(cfg),
        "data": images.fingerprint(),
        "plugins": plugins_of(cfg),
    }


def plugin_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How the plugins' code differs between two records of :func:`plugins_of`, one line each."""
    out = []
    for key in sorted(set(recorded) | set(now)):
        was, is_ = (_code(d.get(key)) for d in (recorded, now))
        if was != is_:
            out.append(f"{key} plugin {_show_code(was)} -> {_show_code(is_)}")
    return out


def _code(origin: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("import_path", "version", "source_sha256")
    return None if origin is None else {k: origin.get(k) for k in keys}


def _show_code(code: dict[str, Any] | None) -> str:
    if code is None:
        return "(none)"
    version = f" {code['version']}" if code["version"] else ""
    return f"{code['import_path']}{version} (source sha256 {code['source_sha256']})"


def write_identity(run: RunDir, identity: dict[str, Any]) -> None:
    run.write_json(run.IDENTITY, identity)


def read_identity(run: RunDir) -> dict[str, Any] | None:
    """The run's identity, or None for a run written before pyrovae recorded one."""
    path = run / run.IDENTITY
    if not path.exists():
        return None
    try:
        value = json.loads(read_text(path, "the run identity"))
    except ValueError as e:
        raise ConfigError(f"{path} is not readable JSON: {e}; the run's identity is lost, start a new run") from e
    keys = ("run_id", "config", "data")
    if not isinstance(value, dict) or any(k not in value for k in keys) or not isinstance(value["config"], dict):
        raise ConfigError(f"{path} is not a pyrovae run identity (it needs {', '.join(keys)}); start a new run")
    return value


def check_same_run(
    run: RunDir, identity: dict[str, Any], saved: Config, images: Images, run_id: Any, action: str = "resume"
) -> None:
    """One line unless the run's config file, data and checkpoint are the ones it started with
    (``action``: what is refused, "resume" or "evaluate")."""
    changed = [
        f"{k} {toml_value(v)} -> {toml_value(now)}"
        for k, v in identity["config"].items()
        if (now := defining(saved).get(k, v)) != v
    ]
    if changed:
        raise ConfigError(
            f"cannot {action} {run}: its {run.CONFIG} was changed since the run started ("
            f"{'; '.join(changed)}); a resumed run may change only {', '.join(sorted(RESUMABLE))}: "
            "restore the file, or start a new run"
        )
    plugins = plugin_changes(identity.get("plugins", {}), plugins_of(saved))
    if plugins:
        raise ConfigError(
            f"cannot {action} {run}: the plugin code changed since the run started ({'; '.join(plugins)}); "
            "restore that version of the plugin, or start a new run"
        )
    if images.fingerprint() != identity["data"]:
        where = f" ({saved.data_path})" if saved.data_path else ""
        raise ConfigError(
            f"cannot {action} {run}: its data{where} changed since the run started (another "
            "fingerprint); resume it on its own data, or start a new run"
        )
    if run_id != identity["run_id"]:
        raise ConfigError(
            f"cannot {action} {run}: its {run.CHECKPOINT} belongs to another run ({run_id or 'none'}, "
            f"this run is {identity['run_id']}); put back the run's own checkpoint, or start a "
            "new run"
        )
