"""Checkpoints: a directory of ``weights.safetensors`` + ``config.json`` + ``state.json``.

* ``weights.safetensors``: every tensor (network weights, optimiser moments, RNG state).
  safetensors is a flat header plus raw bytes: reading it cannot run code, unlike a pickle.
* ``config.json``: the algorithm's name, its hyperparameters, the env id and spaces.
* ``state.json``: counters, scalar state (e.g. PPO-Penalty's β), optimiser settings, the
  lucidrl version and the checkpoint format version.

Writing is atomic: everything goes to a temporary sibling directory (each file fsynced,
``state.json`` last) that is renamed into place only when complete. A save killed at any moment
leaves the previous checkpoint or the new one: between its two renames both lie hidden beside
the path, and ``recover_checkpoint`` (called by every load and save) puts the newer back; the
next save removes what killed saves left behind. ``save`` replaces only a lucidrl checkpoint.
Loading checks each file and each field it reads, refuses non-finite weights, and names what
is wrong with a checkpoint it refuses.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lucidrl.errors import CheckpointError

FORMAT_VERSION = 1
FILES = ("weights.safetensors", "config.json", "state.json")
OPTIONAL_FILES = ("replay.safetensors",)  # DQN's replay memory, with save_replay_buffer=True


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """Where the checkpoint of ``path`` lives: ``path`` itself, or ``path/model`` for a run directory."""
    p = Path(path)
    if (p / "model" / FILES[0]).exists() and not (p / FILES[0]).exists():
        return p / "model"
    if p.is_dir() and any(p.iterdir()) and not (p / FILES[0]).exists() and not (p / FILES[1]).exists():
        return p / "model"  # a run directory (metrics, events...): save beside them, never over them
    return p


# --------------------------------------------------------------------------- crash safety
def _hidden_copies(dest: Path, kind: str) -> list[Path]:
    """``.NAME.tmp-*`` (a save in progress) or ``.NAME.old-*`` (the copy a save replaces) beside ``dest``."""
    return sorted(dest.parent.glob(f".{dest.name}.{kind}-*")) if dest.parent.is_dir() else []


def is_complete(d: Path) -> bool:
    """Every file of a checkpoint is there and ``state.json`` (written last, after an fsync of the
    others) is a JSON object: a save that got this far wrote everything."""
    if not all((d / f).is_file() for f in FILES):
        return False
    try:
        with open(d / FILES[2]) as f:
            return isinstance(json.load(f), dict)
    except (OSError, ValueError):
        return False


def recover_checkpoint(path: str | os.PathLike) -> Path | None:
    """The complete checkpoint at ``path``, recovering one a killed save left between its renames.

    ``save_checkpoint`` writes ``.NAME.tmp-X``, renames NAME to ``.NAME.old-X``, renames the new copy
    to NAME, then deletes the old one. Killed between the two renames, NAME is missing while both
    copies are complete on disk: the newer (the temporary one) is renamed into place, else the old
    one. Returns the checkpoint directory, or None when there is no complete checkpoint there.
    """
    dest = checkpoint_dir(path)
    if dest.exists():
        return dest if is_complete(dest) else None
    for kind in ("tmp", "old"):
        copies = [c for c in _hidden_copies(dest, kind) if is_complete(c)]
        if copies:
            best = max(copies, key=lambda c: (c / FILES[2]).stat().st_mtime_ns)
            try:
                os.rename(best, dest)
            except OSError:
                return best  # a read-only place: read the copy where it lies
            _fsync_dir(dest.parent)
            return dest
    return None


def _fsync_dir(d: Path) -> None:
    """Make a rename in ``d`` durable (POSIX: the directory entry is data of the directory)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse_foreign(dest: Path) -> None:
    """``save`` replaces only a lucidrl checkpoint: never a user's file or a directory of other things."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise CheckpointError(f"{str(dest)!r} is a file, not a lucidrl checkpoint; save() will not replace it. "
                              "Choose another path (a checkpoint is a directory).")
    foreign = sorted(e.name for e in dest.iterdir() if e.name not in FILES + OPTIONAL_FILES)
    if foreign:
        raise CheckpointError(f"{str(dest)!r} holds {', '.join(foreign[:5])}, which are not part of a lucidrl "
                              "checkpoint; save() will not replace it. Choose another path or move those files.")
    if (dest / FILES[1]).is_file():
        try:
            with open(dest / FILES[1]) as f:
                ours = "algo" in json.load(f)
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise CheckpointError(f"{str(dest / FILES[1])!r} is not a lucidrl checkpoint's config; save() will not "
                                  "replace it. Choose another path.")


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    # clone: a tensor may be a view into a larger one (flat parameters), which safetensors refuses
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                    state: dict[str, Any], extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write a checkpoint atomically; returns the directory written.

    ``extra``: more safetensors files (a name of ``OPTIONAL_FILES`` -> tensors), e.g. DQN's replay memory.
    A killed save leaves the previous checkpoint or the new one (``recover_checkpoint``), never neither;
    each save removes the hidden copies earlier killed saves left behind.
    """
    dest = checkpoint_dir(path)
    if not dest.exists():
        recover_checkpoint(dest)  # a copy a killed save left: back in place, so the checks below see it
    _refuse_foreign(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        _write_tensors(tmp / FILES[0], tensors)
        for name, extra_tensors in (extra or {}).items():
            if name not in OPTIONAL_FILES:
                raise ValueError(f"unknown checkpoint file {name!r}")
            _write_tensors(tmp / name, extra_tensors)
        for name, obj in ((FILES[1], config), (FILES[2], {**state, "format_version": FORMAT_VERSION})):
            with open(tmp / name, "w") as f:  # state.json last: its presence marks a complete copy
                json.dump(obj, f, indent=2, sort_keys=False)
                f.flush()
                os.fsync(f.fileno())
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{tag}"
            os.rename(dest, old)
        os.rename(tmp, dest)
        _fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in _hidden_copies(dest, "tmp") + _hidden_copies(dest, "old"):  # left by saves that were killed
        shutil.rmtree(stale, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- reading and checking
def _field_error(file: Path, field: str, expected: str, value: Any) -> CheckpointError:
    shown = repr(value)
    return CheckpointError(f"corrupt checkpoint: {file} field {field!r} should be {expected}, got "
                           f"{shown if len(shown) < 80 else shown[:77] + '...'}")


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate_documents(d: Path, config: dict[str, Any], state: dict[str, Any]) -> None:
    """Check every field of ``config.json`` and ``state.json`` that loading reads; name the file and field."""
    cfile, sfile = d / FILES[1], d / FILES[2]
    for key, ok, expected in (
            ("algo", lambda v: isinstance(v, str), "a string (the algorithm's name)"),
            ("config", lambda v: isinstance(v, dict), "an object of hyperparameters"),
            ("env_id", lambda v: v is None or isinstance(v, str), "a string or null"),
            ("observation_space", lambda v: isinstance(v, dict), "an object describing a space"),
            ("action_space", lambda v: isinstance(v, dict), "an object describing a space")):
        if key not in config:
            raise CheckpointError(f"corrupt checkpoint: {cfile} has no {key!r} entry")
        if not ok(config[key]):
            raise _field_error(cfile, key, expected, config[key])
    for key in ("num_timesteps", "n_updates"):
        if key in state and not _is_count(state[key]):
            raise _field_error(sfile, key, "a non-negative integer", state[key])
    checks = (("attributes", dict, "an object"), ("optimizers", dict, "an object"), ("log", (dict, type(None)), "an object"),
              ("rng", dict, "an object"), ("lucidrl_version", str, "a string"))
    for key, kind, expected in checks:
        if key in state and not isinstance(state[key], kind):
            raise _field_error(sfile, key, expected, state[key])
    for name, value in state.get("attributes", {}).items():
        if not (value is None or isinstance(value, (int, float))) or (isinstance(value, float) and not math.isfinite(value)):
            raise _field_error(sfile, f"attributes.{name}", "a finite number", value)
    for name, meta in state.get("optimizers", {}).items():
        if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list) or \
                not all(isinstance(g, dict) for g in meta["param_groups"]) or \
                not isinstance(meta.get("scalars", {}), dict):
            raise _field_error(sfile, f"optimizers.{name}", "an object with a list 'param_groups' of objects", meta)
    log = state.get("log")
    if log is not None and not (_is_count(log.get("csv_bytes")) and (log.get("step") is None or _is_count(log.get("step")))):
        raise _field_error(sfile, "log", "an object with a non-negative integer 'csv_bytes' and 'step'", log)


def load_checkpoint(path: str | os.PathLike, extra: tuple[str, ...] = ()
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read and check a checkpoint: ``(tensors, config, state)``. Never unpickles anything.

    ``extra``: names of ``OPTIONAL_FILES`` to read too, when present: their tensors are returned
    under ``"NAME/key"``.
    """
    p = Path(path)
    recovered = recover_checkpoint(p)
    if recovered is None and not p.exists():
        raise CheckpointError(f"no checkpoint at {str(p)!r}: the path does not exist")
    d = recovered or checkpoint_dir(p)
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise CheckpointError(
            f"{str(d)!r} is not a complete lucidrl checkpoint: missing {', '.join(missing)}. "
            "Point at the directory written by model.save() (or a run directory that holds model/)."
        )
    docs = []
    for name in FILES[1:]:
        try:
            with open(d / name) as f:
                obj = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"corrupt checkpoint: {d / name} is not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise CheckpointError(f"corrupt checkpoint: {d / name} should hold a JSON object")
        docs.append(obj)
    config, state = docs
    version = state.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"corrupt checkpoint: {d / FILES[2]} has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(d)!r} was written by lucidrl {state.get('lucidrl_version', '?')} in checkpoint format {version}; "
            f"this lucidrl reads formats up to {FORMAT_VERSION}. Upgrade: pip install -U lucidrl"
        )
    validate_documents(d, config, state)
    tensors = _read_tensors(d / FILES[0])
    for name in extra:
        if (d / name).is_file():
            tensors.update({f"{name}/{k}": v for k, v in _read_tensors(d / name).items()})
    return tensors, config, state


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"corrupt checkpoint: {file} is not a readable safetensors file ({e})") from None
    for key, value in tensors.items():  # a model of NaNs is no model: refuse it rather than act on it
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"corrupt checkpoint: {file} holds non-finite values (NaN or inf) in {key!r}; "
                                  "it cannot be used. Load an earlier checkpoint (e.g. RUN_DIR/checkpoints/step_N).")
    return tensors


# --------------------------------------------------------------------------- optimiser state
def optimizer_to_flat(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and plain values (for JSON)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}/state/{idx}/{k}"] = v.clone()  # may be a view of a shared tensor
            else:
                scalars[f"{idx}/{k}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


_IMPLEMENTATION_OPTIONS = ("fused", "foreach", "capturable", "differentiable")


def optimizer_from_flat(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/state/"):
            idx, k = key[len(prefix) + 7:].split("/", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split("/", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    # how torch computes the step (fused, foreach, ...) is this optimiser's choice, not the checkpoint's
    for group, current in zip(groups, optimizer.param_groups):
        group.update({k: current[k] for k in _IMPLEMENTATION_OPTIONS if k in current})
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"the optimiser state {prefix!r} in the checkpoint does not fit this model ({e})") from None


def legacy_optimizer_state(prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any], names: list[str],
                           optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """An older lucidrl's optimiser state, kept for weights packed into flat tensors, cut into torch's per-parameter
    state for ``optimizer`` (whose parameters are named ``names``, in order).

    ``meta["layout"]`` lists, for each named parameter, the flat tensor it lived in (group, index) and its
    offset there; each parameter's slice of the moments (Adam's, RMSprop's) moves to its own state entry:
    exact, as the moments are element-wise. Returns ``(tensors, meta)`` in the current format, or None when
    the layout does not name exactly these parameters (the caller then starts the optimiser afresh).
    """
    try:
        rows = {name: (int(g), int(i), int(off), int(n)) for g, i, name, off, n in meta["layout"]}
        state_id = {(g, i): pid for g, group in enumerate(meta["param_groups"]) for i, pid in enumerate(group["params"])}
        params = [p for group in optimizer.param_groups for p in group["params"]]
    except (KeyError, TypeError, ValueError):
        return None
    if set(rows) != set(names) or len(names) != len(params) or len(meta["param_groups"]) != 1:
        return None
    out: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for j, (name, p) in enumerate(zip(names, params)):
        g, i, off, n = rows[name]
        if n != p.numel():
            return None
        src = state_id.get((g, i))
        if src is None:
            return None  # the row names a flat tensor the optimiser did not have
        moments = 0
        for key, value in tensors.items():
            if key.startswith(f"{prefix}/state/{src}/"):
                k = key.rsplit("/", 1)[1]
                if value.dim() == 0:
                    out[f"{prefix}/state/{j}/{k}"] = value.clone()
                elif off + n <= value.numel():
                    out[f"{prefix}/state/{j}/{k}"] = value.reshape(-1)[off:off + n].reshape(p.shape).clone()
                    moments += 1
                else:
                    return None
        if not moments:
            return None  # nothing to carry over for this parameter: start afresh rather than half-restored
        for key, value in meta.get("scalars", {}).items():
            if key.split("/", 1)[0] == str(src):
                scalars[f"{j}/{key.split('/', 1)[1]}"] = value
    group = {**meta["param_groups"][0], "params": list(range(len(params)))}
    return out, {"param_groups": [group], "scalars": scalars}
