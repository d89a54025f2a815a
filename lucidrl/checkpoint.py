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

A path ending in ``.zip`` holds the same files in one zip archive (no pickle anywhere: the zip
is a container of the same safetensors and JSON bytes). It is written to a temporary sibling
file, fsynced and renamed over the path in one ``os.replace`` (atomic), so a killed save leaves
the previous zip or the new one. Loading reads directories and zips alike, and finds ``x.zip``
for ``load("x")`` (Stable-Baselines3's habit: it appends ``.zip``) and the directory ``x`` for
``load("x.zip")`` when only the other one exists. ``save("x")`` still writes the directory ``x``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes

from lucidrl.errors import CheckpointError

FORMAT_VERSION = 1
FILES = ("weights.safetensors", "config.json", "state.json")
OPTIONAL_FILES = ("replay.safetensors",)  # DQN's replay memory, with save_replay_buffer=True


ZIP_SUFFIX = ".zip"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same model gives the same bytes


def is_zip_path(path: str | os.PathLike) -> bool:
    """``save`` writes a zip for a path ending in ``.zip`` (that is not an existing directory)."""
    p = Path(path)
    return p.suffix.lower() == ZIP_SUFFIX and not p.is_dir()


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The path ``load`` reads for ``path``: ``path`` itself when it exists (or a killed save's copy can be
    recovered there); else ``path.zip`` for ``path``, or the directory ``x`` for ``x.zip``, when that one
    exists; else ``path`` (whose absence the caller reports)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(
            f"load needs the path of a checkpoint (a directory, or a .zip file), got {path!r}; "
            "a lucidrl checkpoint is files on disk, not a file object"
        )
    p = Path(path)
    if p.exists() or recover_checkpoint(p) is not None:
        return p
    if p.suffix.lower() == ZIP_SUFFIX:
        alternative = p.with_suffix("")
        if alternative.is_dir() and recover_checkpoint(alternative) is not None:
            return alternative
    else:
        alternative = p.with_name(p.name + ZIP_SUFFIX)
        if alternative.is_file():
            return alternative
    return p


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
        raise CheckpointError(
            f"{str(dest)!r} is a file, not a lucidrl checkpoint; save() will not replace it. "
            "Choose another path (a checkpoint is a directory, or one file for a path ending in .zip)."
        )
    foreign = sorted(e.name for e in dest.iterdir() if e.name not in FILES + OPTIONAL_FILES)
    if foreign:
        raise CheckpointError(
            f"{str(dest)!r} holds {', '.join(foreign[:5])}, which are not part of a lucidrl "
            "checkpoint; save() will not replace it. Choose another path or move those files."
        )
    if (dest / FILES[1]).is_file():
        try:
            with open(dest / FILES[1]) as f:
                ours = "algo" in json.load(f)
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise CheckpointError(
                f"{str(dest / FILES[1])!r} is not a lucidrl checkpoint's config; save() will not "
                "replace it. Choose another path."
            )


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: a tensor may be a view into a larger one (flat parameters), which safetensors refuses
    return {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(_plain(tensors), str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_tensors_file(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """One safetensors file written whole or not at all: a temporary file, fsynced, renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_tensors(tmp, tensors)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_tensors_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file (a CheckpointError names the file when it cannot be read)."""
    return _read_tensors(path)


def save_checkpoint(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint atomically; returns the directory written.

    ``extra``: more safetensors files (a name of ``OPTIONAL_FILES`` -> tensors), e.g. DQN's replay memory.
    A killed save leaves the previous checkpoint or the new one (``recover_checkpoint``), never neither;
    each save removes the hidden copies earlier killed saves left behind.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(
            f"save needs a path (a directory, or a file ending in .zip), got {path!r}; "
            "a lucidrl checkpoint is files on disk, not a file object"
        )
    try:
        return _save(path, tensors, config, state, extra)
    except OSError as e:  # a path that cannot be written: name it, not the hidden temporary copy
        raise CheckpointError(
            f"cannot save a checkpoint at {str(path)!r}: {e.strerror or e}; nothing there was changed"
        ) from None


def _save(path, tensors, config, state, extra) -> Path:
    if is_zip_path(path):
        return _save_zip(Path(path), tensors, config, state, extra)
    dest = checkpoint_dir(path)
    if not dest.exists():
        recover_checkpoint(dest)  # a copy a killed save left: back in place, so the checks below see it
    _refuse_foreign(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.tmp-{tag}"
    tmp.mkdir()
    old = None
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
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{tag}"
            os.rename(dest, old)
        os.rename(tmp, dest)
        _fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not dest.exists():  # failed between the renames: put it back
            os.rename(old, dest)
        raise
    for stale in _hidden_copies(dest, "tmp") + _hidden_copies(dest, "old"):  # left by saves that were killed
        shutil.rmtree(stale, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- zip checkpoints
def _zip_names(file: Path) -> list[str] | None:
    """The member names of a zip file, or None when it is not a readable zip."""
    try:
        with zipfile.ZipFile(file) as z:
            return z.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError):
        return None


def _refuse_foreign_zip(dest: Path) -> None:
    """A ``.zip`` save replaces only a lucidrl zip checkpoint: never a directory, a user's file or another zip."""
    if not dest.exists() and not dest.is_symlink():
        return
    if dest.is_dir() or not dest.is_file():
        raise CheckpointError(
            f"{str(dest)!r} exists and is not a file; save() will not replace it with a zip "
            "checkpoint. Choose another path."
        )
    names = _zip_names(dest)
    ours = names is not None and set(FILES) <= set(names) and set(names) <= set(FILES + OPTIONAL_FILES)
    if ours:
        try:
            with zipfile.ZipFile(dest) as z:
                ours = "algo" in json.loads(z.read(FILES[1]))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, TypeError, RuntimeError):
            ours = False
    if not ours:
        what = f"a zip of {', '.join(sorted(names)[:5]) or 'nothing'}" if names is not None else "not a zip archive"
        raise CheckpointError(
            f"{str(dest)!r} is {what}, not a lucidrl checkpoint; save() will not replace it. "
            "Choose another path or move that file."
        )


def _save_zip(
    dest: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None,
) -> Path:
    """``save_checkpoint`` for a ``.zip`` path: the same files in one zip, written to a temporary sibling
    file, fsynced, then renamed over ``dest`` (``os.replace``: atomic; readers see the old zip or the new)."""
    _refuse_foreign_zip(dest)
    members = [(FILES[0], save_bytes(_plain(tensors)))]
    for name, extra_tensors in (extra or {}).items():
        if name not in OPTIONAL_FILES:
            raise ValueError(f"unknown checkpoint file {name!r}")
        members.append((name, save_bytes(_plain(extra_tensors))))
    for name, obj in ((FILES[1], config), (FILES[2], {**state, "format_version": FORMAT_VERSION})):
        members.append((name, json.dumps(obj, indent=2, sort_keys=False).encode()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as raw:
            with zipfile.ZipFile(raw, "w") as z:
                for name, data in members:
                    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                    info.compress_type = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
                    z.writestr(info, data)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for stale in _hidden_copies(dest, "tmp"):  # left by zip saves that were killed
        if stale.is_file():
            stale.unlink(missing_ok=True)
    return dest


def _read_zip(file: Path) -> dict[str, bytes]:
    """The checkpoint files inside a zip, as bytes (nothing is extracted to disk, nothing unpickled)."""
    names = _zip_names(file)
    if names is None and file.suffix.lower() != ZIP_SUFFIX:
        raise CheckpointError(
            f"{str(file)!r} is a file but not a lucidrl checkpoint: load() reads the directory or "
            "the .zip file written by model.save(). Point at that."
        )
    if names is None:
        raise CheckpointError(
            f"corrupt checkpoint: {str(file)!r} is not a readable zip file (truncated or damaged). "
            "Save the model again, or load an earlier checkpoint."
        )
    if "data" in names and "policy.pth" in names:
        raise CheckpointError(
            f"{str(file)!r} is a Stable-Baselines3 model, not a lucidrl checkpoint; convert it "
            f"(without unpickling) with lucidrl.from_sb3({str(file)!r}) or "
            f"`lucidrl import-sb3 {file} OUT.zip`"
        )
    missing = [f for f in FILES if f not in names]
    if missing:
        raise CheckpointError(
            f"{str(file)!r} is a zip but not a lucidrl checkpoint: it lacks {', '.join(missing)} "
            f"(it holds {', '.join(sorted(names)[:5]) or 'nothing'}). Point at a file written by "
            "model.save('NAME.zip')."
        )
    try:
        with zipfile.ZipFile(file) as z:  # read() checks each member's CRC: a flipped byte is caught here
            return {n: z.read(n) for n in FILES + OPTIONAL_FILES if n in names}
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as e:
        raise CheckpointError(
            f"corrupt checkpoint: {str(file)!r} is a damaged zip ({e}). Save the model again, "
            "or load an earlier checkpoint."
        ) from None


# --------------------------------------------------------------------------- reading and checking
def _field_error(file: Path, field: str, expected: str, value: Any) -> CheckpointError:
    shown = repr(value)
    return CheckpointError(
        f"corrupt checkpoint: {file} field {field!r} should be {expected}, got "
        f"{shown if len(shown) < 80 else shown[:77] + '...'}"
    )


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
        ("action_space", lambda v: isinstance(v, dict), "an object describing a space"),
    ):
        if key not in config:
            raise CheckpointError(f"corrupt checkpoint: {cfile} has no {key!r} entry")
        if not ok(config[key]):
            raise _field_error(cfile, key, expected, config[key])
    kwargs = config.get("env_kwargs")  # (optional: checkpoints before it have none)
    if kwargs is not None and not (isinstance(kwargs, dict) and all(k.isidentifier() for k in kwargs)):
        raise _field_error(cfile, "env_kwargs", "an object of the env's keyword arguments", kwargs)
    for key in ("num_timesteps", "n_updates"):
        if key in state and not _is_count(state[key]):
            raise _field_error(sfile, key, "a non-negative integer", state[key])
    checks = (
        ("attributes", dict, "an object"),
        ("optimizers", dict, "an object"),
        ("log", (dict, type(None)), "an object"),
        ("rng", dict, "an object"),
        ("lucidrl_version", str, "a string"),
    )
    for key, kind, expected in checks:
        if key in state and not isinstance(state[key], kind):
            raise _field_error(sfile, key, expected, state[key])
    for name, value in state.get("attributes", {}).items():
        if not (value is None or isinstance(value, (int, float))) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise _field_error(sfile, f"attributes.{name}", "a finite number", value)
    for name, meta in state.get("optimizers", {}).items():
        if (
            not isinstance(meta, dict)
            or not isinstance(meta.get("param_groups"), list)
            or not all(isinstance(g, dict) for g in meta["param_groups"])
            or not isinstance(meta.get("scalars", {}), dict)
        ):
            raise _field_error(sfile, f"optimizers.{name}", "an object with a list 'param_groups' of objects", meta)
    log = state.get("log")
    if log is not None and not (
        _is_count(log.get("csv_bytes")) and (log.get("step") is None or _is_count(log.get("step")))
    ):
        raise _field_error(sfile, "log", "an object with a non-negative integer 'csv_bytes' and 'step'", log)


def load_checkpoint(
    path: str | os.PathLike, extra: tuple[str, ...] = ()
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read and check a checkpoint: ``(tensors, config, state)``. Never unpickles anything.

    ``extra``: names of ``OPTIONAL_FILES`` to read too, when present: their tensors are returned
    under ``"NAME/key"``.
    """
    d, members = _open(path)
    config, state = _documents(d, members)
    tensors = _read_tensors(d / FILES[0], None if members is None else members[FILES[0]])
    for name in extra:
        if members is not None and name in members:
            tensors.update({f"{name}/{k}": v for k, v in _read_tensors(d / name, members[name]).items()})
        elif members is None and (d / name).is_file():
            tensors.update({f"{name}/{k}": v for k, v in _read_tensors(d / name).items()})
    return tensors, config, state


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's ``config.json`` (a directory or a zip), checked as ``load_checkpoint`` checks it, without
    reading the weights."""
    return _documents(*_open(path))[0]


def _open(path: str | os.PathLike) -> tuple[Path, dict[str, bytes] | None]:
    """Where the checkpoint at ``path`` lies (a killed save's copy recovered) and, for a zip, its files."""
    p = find_checkpoint(path)
    members: dict[str, bytes] | None = None  # a zip's files; None for a directory
    if p.is_file():
        members = _read_zip(p)
        d = p
    else:
        recovered = recover_checkpoint(p)
        if recovered is None and not p.exists():
            also = "" if p.suffix.lower() == ZIP_SUFFIX else f" (nor {str(p) + ZIP_SUFFIX!r})"
            raise CheckpointError(f"no checkpoint at {str(p)!r}{also}: the path does not exist")
        d = recovered or checkpoint_dir(p)
        missing = [f for f in FILES if not (d / f).is_file()]
        if missing:
            raise CheckpointError(
                f"{str(d)!r} is not a complete lucidrl checkpoint: missing {', '.join(missing)}. "
                "Point at the directory written by model.save() (or a run directory that holds model/)."
            )
    return d, members


def _documents(d: Path, members: dict[str, bytes] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.json`` and ``state.json`` of the checkpoint at ``d`` (``members``: a zip's files), checked."""
    docs = []
    for name in FILES[1:]:
        try:
            if members is not None:
                obj = json.loads(members[name])
            else:
                with open(d / name) as f:
                    obj = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"corrupt checkpoint: {d / name} is not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise CheckpointError(f"corrupt checkpoint: {d / name} should hold a JSON object")
        docs.append(obj)
    config, state = docs
    version = state.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"corrupt checkpoint: {d / FILES[2]} has no format_version (an integer >= 1)")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(d)!r} was written by lucidrl {state.get('lucidrl_version', '?')} in checkpoint format {version}; "
            f"this lucidrl reads formats up to {FORMAT_VERSION}. Upgrade: pip install -U lucidrl"
        )
    validate_documents(d, config, state)
    return config, state


def _read_tensors(file: Path, data: bytes | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file (``data``: its bytes, read from a zip) -> tensors, refusing non-finite values."""
    try:
        tensors = load_file(str(file)) if data is None else load_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"corrupt checkpoint: {file} is not a readable safetensors file ({e})") from None
    for key, value in tensors.items():  # a model of NaNs is no model: refuse it rather than act on it
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"corrupt checkpoint: {file} holds non-finite values (NaN or inf) in {key!r}; "
                "it cannot be used. Load an earlier checkpoint (e.g. RUN_DIR/checkpoints/step_N)."
            )
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
    return tensors, {"type": type(optimizer).__name__, "param_groups": groups, "scalars": scalars}


_IMPLEMENTATION_OPTIONS = ("fused", "foreach", "capturable", "differentiable")


def optimizer_from_flat(
    prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/state/"):
            idx, k = key[len(prefix) + 7 :].split("/", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split("/", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    saved_type = meta.get("type")  # written since 2026-12-05
    if saved_type is not None and saved_type != type(optimizer).__name__:
        raise CheckpointError(
            f"the optimiser state {prefix!r} in the checkpoint is a {saved_type}'s, but this model's optimiser is "
            f"{type(optimizer).__name__}; was the checkpoint's state.json taken from another algorithm's?"
        )
    expected = _state_keys(optimizer)
    for index, st in state.items():
        if expected is not None and set(st) != expected:
            raise CheckpointError(
                f"the optimiser state {prefix!r} in the checkpoint holds {sorted(st)} for parameter {index}, but this "
                f"model's {type(optimizer).__name__} keeps {sorted(expected)}; was the checkpoint's weights file "
                "taken from another algorithm's?"
            )
    # how torch computes the step (fused, foreach, ...) is this optimiser's choice, not the checkpoint's
    for group, current in zip(groups, optimizer.param_groups):
        group.update({k: current[k] for k in _IMPLEMENTATION_OPTIONS if k in current})
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"the optimiser state {prefix!r} in the checkpoint does not fit this model ({e})"
        ) from None


def _state_keys(optimizer: torch.optim.Optimizer) -> set[str] | None:
    """What this kind of optimiser keeps per parameter (Adam: step, exp_avg, exp_avg_sq), from one step of a copy
    with the same settings on a one-element parameter; None where such a copy cannot be made (no check then)."""
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    try:
        probe = type(optimizer)([p])  # type: ignore[call-arg]  # (each subclass has its defaults)
        probe.param_groups[0].update(
            {k: v for k, v in optimizer.defaults.items() if k not in _IMPLEMENTATION_OPTIONS and k != "params"}
        )
        probe.step()
    except Exception:  # an optimiser that needs arguments, or settings that do not fit a CPU parameter
        return None
    return set(probe.state[p])


def legacy_optimizer_state(
    prefix: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    names: list[str],
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """An older lucidrl's optimiser state, kept for weights packed into flat tensors, cut into torch's per-parameter
    state for ``optimizer`` (whose parameters are named ``names``, in order).

    ``meta["layout"]`` lists, for each named parameter, the flat tensor it lived in (group, index) and its
    offset there; each parameter's slice of the moments (Adam's, RMSprop's) moves to its own state entry:
    exact, as the moments are element-wise. Returns ``(tensors, meta)`` in the current format, or None when
    the layout does not name exactly these parameters (the caller then starts the optimiser afresh).
    """
    try:
        rows = {name: (int(g), int(i), int(off), int(n)) for g, i, name, off, n in meta["layout"]}
        state_id = {
            (g, i): pid for g, group in enumerate(meta["param_groups"]) for i, pid in enumerate(group["params"])
        }
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
                    out[f"{prefix}/state/{j}/{k}"] = value.reshape(-1)[off : off + n].reshape(p.shape).clone()
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
