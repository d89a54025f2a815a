"""Checkpoints: a directory of ``weights.safetensors`` + ``config.json`` + ``state.json``.

* ``weights.safetensors``: every tensor (network weights, optimiser moments, RNG state).
  safetensors is a flat header plus raw bytes: reading it cannot run code, unlike a pickle.
* ``config.json``: the algorithm's name, its hyperparameters, the env id and spaces.
* ``state.json``: counters, scalar state (e.g. PPO-Penalty's β), optimiser settings, the
  lucidrl version and the checkpoint format version.

Writing is atomic: everything goes to a temporary sibling directory that is renamed into
place only when complete, so an interrupted save never damages the previous checkpoint.
Loading checks each file and names what is wrong with one it refuses.
"""

from __future__ import annotations

import json
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


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """Where the checkpoint of ``path`` lives: ``path`` itself, or ``path/model`` for a run directory."""
    p = Path(path)
    if (p / "model" / FILES[0]).exists() and not (p / FILES[0]).exists():
        return p / "model"
    if p.is_dir() and any(p.iterdir()) and not (p / FILES[0]).exists() and not (p / FILES[1]).exists():
        return p / "model"  # a run directory (metrics, events...): save beside them, never over them
    return p


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                    state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically; returns the directory written."""
    dest = checkpoint_dir(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        # clone: a tensor may be a view into a larger one (flat parameters), which safetensors refuses
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp / FILES[0]))
        for name, obj in ((FILES[1], config), (FILES[2], {**state, "format_version": FORMAT_VERSION})):
            with open(tmp / name, "w") as f:
                json.dump(obj, f, indent=2, sort_keys=False)
                f.flush()
                os.fsync(f.fileno())
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{tag}"
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read and check a checkpoint: ``(tensors, config, state)``. Never unpickles anything."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {str(p)!r}: the path does not exist")
    d = checkpoint_dir(p)
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
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"corrupt checkpoint: {d / name} is not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise CheckpointError(f"corrupt checkpoint: {d / name} should hold a JSON object")
        docs.append(obj)
    config, state = docs
    version = state.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"corrupt checkpoint: {d / FILES[2]} has no integer format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(d)!r} was written by lucidrl {state.get('lucidrl_version', '?')} in checkpoint format {version}; "
            f"this lucidrl reads formats up to {FORMAT_VERSION}. Upgrade: pip install -U lucidrl"
        )
    for key in ("algo", "config"):
        if key not in config:
            raise CheckpointError(f"corrupt checkpoint: {d / FILES[1]} has no {key!r} entry")
    try:
        tensors = load_file(str(d / FILES[0]))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint: {d / FILES[0]} is not a readable safetensors file ({e})") from None
    return tensors, config, state


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
