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

A file object (``io.BytesIO``, a file opened ``"wb"`` / ``"rb"``: Stable-Baselines3's ``io.BufferedIOBase``) takes
the same zip: ``save`` writes the bytes a ``.zip`` save writes, from the object's position, then flushes it (it
neither seeks nor closes it); ``load`` reads the zip from the object's position to its end and checks it as it
checks a ``.zip`` file, naming "the file object" (with its ``name`` where it has one) instead of a path. Neither
needs the object to be seekable. What only makes sense on disk (the atomic rename, refusing to replace a file
that is not a checkpoint, recovering a killed save) does not apply to a file object.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import shutil
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

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
            f"load needs the path of a checkpoint (a directory, or a .zip file) or a binary file object open for "
            f"reading (io.BytesIO, open(PATH, 'rb')), got {path!r:.80}"
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
    # the name escaped: "agent[1]" as a pattern would match ".agent1.tmp-*", another model's save in progress
    return sorted(dest.parent.glob(f".{glob.escape(dest.name)}.{kind}-*")) if dest.parent.is_dir() else []


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


def save_tensors_file(path: Path | IO[bytes], tensors: dict[str, torch.Tensor], what: str = "save") -> None:
    """One safetensors file written whole or not at all: a temporary file, fsynced, renamed over ``path``. A binary
    file object takes the same bytes from its position (``write_file_object``)."""
    if not isinstance(path, Path):
        write_file_object(path, save_bytes(_plain(tensors)), what)
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_tensors(tmp, tensors)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_tensors_file(path: Path | IO[bytes], what: str = "load") -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file, or of a binary file object's bytes from its position (a
    CheckpointError names the file when it cannot be read)."""
    if not isinstance(path, Path):
        source = read_file_object(path, what, zip_archive=False)  # one safetensors file, read from its start
        return _read_tensors(source.label, source.data)
    return _read_tensors(path)


def save_checkpoint(
    path: str | os.PathLike | IO[bytes],
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Any:
    """Write a checkpoint atomically; returns the directory (or zip file) written.

    ``extra``: more safetensors files (a name of ``OPTIONAL_FILES`` -> tensors), e.g. DQN's replay memory.
    A killed save leaves the previous checkpoint or the new one (``recover_checkpoint``), never neither;
    each save removes the hidden copies earlier killed saves left behind.

    ``path`` may be a binary file object: the zip a ``.zip`` path would get is written into it from its
    position and flushed (not atomic: a failed write leaves what was written); it is returned.
    """
    if is_file_object(path):
        write_file_object(path, _zip_bytes(_zip_members(tensors, config, state, extra)), "save")
        return path
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CheckpointError(
            f"save needs a path (a directory, or a file ending in .zip) or a binary file object open for "
            f"writing (io.BytesIO, open(PATH, 'wb')), got {path!r:.80}"
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
def _zip_names(file: Path | IO[bytes]) -> list[str] | None:
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


def _zip_members(
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None,
) -> list[tuple[str, bytes]]:
    """The files of a zip checkpoint, in their order, as bytes."""
    members = [(FILES[0], save_bytes(_plain(tensors)))]
    for name, extra_tensors in (extra or {}).items():
        if name not in OPTIONAL_FILES:
            raise ValueError(f"unknown checkpoint file {name!r}")
        members.append((name, save_bytes(_plain(extra_tensors))))
    for name, obj in ((FILES[1], config), (FILES[2], {**state, "format_version": FORMAT_VERSION})):
        members.append((name, json.dumps(obj, indent=2, sort_keys=False).encode()))
    return members


def _write_zip(raw: IO[bytes], members: list[tuple[str, bytes]]) -> None:
    """The zip of ``members`` written to ``raw`` (a seekable binary file at position 0): fixed timestamps, the
    weights stored as they are, the JSON deflated. The one writer of zip checkpoints: same model, same bytes."""
    with zipfile.ZipFile(raw, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def _zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """The bytes ``_write_zip`` writes to a ``.zip`` file (made in memory, so any binary stream can take them)."""
    buffer = io.BytesIO()
    _write_zip(buffer, members)
    return buffer.getvalue()


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
    members = _zip_members(tensors, config, state, extra)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as raw:
            _write_zip(raw, members)
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


# --------------------------------------------------------------------------- file objects
class CheckpointBytes:
    """A checkpoint read from a file object: its bytes (from the object's position to its end) and how messages
    name it. ``load_checkpoint`` and ``read_config`` take one as they take a path; ``lucidrl.load`` reads a file
    object into one once, so that every loader it hands the checkpoint to reads the same bytes."""

    def __init__(self, data: bytes, label: str, last_archive: bool = False) -> None:
        self.data, self.label = data, label
        self.last_archive = last_archive  # read whole from its start: the zip is the last one in it (as SB3 reads)

    def __truediv__(self, member: str) -> str:  # where a directory's path would give "DIR/config.json"
        return f"{member} in {self.label}"

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"<{self.label}: {len(self.data)} bytes>"


def is_file_object(obj: Any) -> bool:
    """A file object (``io.BytesIO``, an open file, anything with ``read`` or ``write``), not a path."""
    return not isinstance(obj, (str, bytes, os.PathLike, CheckpointBytes)) and (
        callable(getattr(obj, "read", None)) or callable(getattr(obj, "write", None))
    )


def describe(target: Any) -> str:
    """How a message names where a checkpoint is: a path, quoted; "the file object", with its ``name`` (a file
    opened by path has one) where it has one."""
    if isinstance(target, CheckpointBytes):
        return target.label
    if is_file_object(target):
        name = getattr(target, "name", None)
        return f"the file object {name!r}" if isinstance(name, str) and name else "the file object"
    return repr(str(target))


def _mode(f: Any) -> str:
    mode = getattr(f, "mode", None)
    return f" (opened with mode {mode!r})" if isinstance(mode, str) else ""


def _usable_stream(f: Any, label: str, what: str, reading: bool) -> None:
    """Refuse a closed, text-mode or wrong-direction file object before touching it, naming the fix."""
    how, verb = ("'rb'", "read from") if reading else ("'wb'", "write into")
    if getattr(f, "closed", False) is True:
        raise CheckpointError(f"{what}: {label} is closed; give an open binary file object (open(PATH, {how}))")
    if isinstance(f, io.TextIOBase):
        raise CheckpointError(
            f"{what}: {label} is a text stream ({type(f).__name__}{_mode(f)}); a checkpoint is a binary zip: "
            f"open the file with mode {how}, or use io.BytesIO instead of io.StringIO"
        )
    check = getattr(f, "readable" if reading else "writable", None)
    if not callable(getattr(f, "read" if reading else "write", None)):
        raise CheckpointError(f"{what}: {label} ({type(f).__name__}) has no {'read' if reading else 'write'}()")
    try:
        ok = check() if callable(check) else True
    except (OSError, ValueError):
        ok = False
    if not ok:
        extra = " (or 'r+b')" if reading else " (or 'r+b', 'ab')"
        raise CheckpointError(
            f"{what}: {label} is not open for {'reading' if reading else 'writing'}{_mode(f)}; open the file with "
            f"mode {how}{extra} to {verb} it"
        )


def read_file_object(f: Any, what: str = "load", zip_archive: bool = True) -> CheckpointBytes:
    """The bytes of a binary file object from its position to its end (no seeking: a stream that cannot seek
    is read the same), or a CheckpointError naming what is wrong with the object and the fix. ``zip_archive``:
    what is read is a zip, found by its end, so an object already at its end is read whole (SB3's habit);
    False for a safetensors file (``save_replay_buffer``), which is read from its start: no such fallback."""
    label = describe(f)
    _usable_stream(f, label, what, reading=True)
    try:
        data = f.read()
    except (OSError, ValueError, TypeError) as e:  # (io.UnsupportedOperation is both of the first two)
        raise CheckpointError(f"{what}: cannot read {label} ({e})") from None
    if isinstance(data, str):
        raise CheckpointError(
            f"{what}: {label} gave text (str), not bytes; a checkpoint is a binary zip: open the file with mode "
            "'rb', or use io.BytesIO instead of io.StringIO"
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CheckpointError(
            f"{what}: {label}'s read() gave {type(data).__name__}, not bytes; give a binary file object "
            "(io.BytesIO, open(PATH, 'rb'))"
        )
    if not data:
        try:
            position = f.tell()
        except (AttributeError, OSError, ValueError):
            position = 0
        if isinstance(position, int) and position > 0 and zip_archive and _seekable(f):
            # SB3's habit: model.save(f) then PPO.load(f) with no seek. zipfile (which SB3 hands f to) finds the
            # archive that ends the object wherever f stands; so does this: the object's whole bytes, its last zip
            try:
                f.seek(0)
                whole = f.read()
            except (OSError, ValueError, TypeError):
                whole = b""
            if isinstance(whole, (bytes, bytearray, memoryview)) and whole:
                return CheckpointBytes(bytes(whole), label, last_archive=True)
        if isinstance(position, int) and position > 0:
            raise CheckpointError(
                f"{what}: {label} has nothing left to read: it is at its end (position {position}). lucidrl reads a "
                "checkpoint from the object's current position: after model.save(f), call f.seek(0) (or seek to "
                "where the save began) before loading from it"
            )
        raise CheckpointError(f"{what}: {label} is empty: there is no checkpoint in it")
    return CheckpointBytes(bytes(data), label)


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def write_file_object(f: Any, data: bytes, what: str = "save") -> None:
    """Write ``data`` into a binary file object from its position, then flush it; never seeks or closes it."""
    label = describe(f)
    _usable_stream(f, label, what, reading=False)
    try:
        while data:
            n = f.write(data)
            if n is None or n >= len(data):  # (some file-like objects return None from write)
                break
            if n <= 0:
                raise OSError(f"write() took no bytes with {len(data)} still to write")
            data = data[n:]  # a raw stream may take part of it
        flush = getattr(f, "flush", None)
        if callable(flush):
            flush()
    except TypeError as e:
        raise CheckpointError(
            f"{what}: {label} does not take bytes ({e}); a checkpoint is a binary zip: open the file with mode "
            "'wb', or use io.BytesIO"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"{what}: cannot write into {label} ({e}); what it holds from its position on is no complete checkpoint"
        ) from None


def _read_zip(file: Path | CheckpointBytes) -> dict[str, bytes]:
    """The checkpoint files inside a zip (a file, or a file object's bytes), as bytes (nothing is extracted to
    disk, nothing unpickled)."""
    stream = isinstance(file, CheckpointBytes)
    source: Path | IO[bytes] = io.BytesIO(file.data) if isinstance(file, CheckpointBytes) else file
    shown = describe(file)
    names = _zip_names(source)
    if names is None and isinstance(file, Path) and file.suffix.lower() != ZIP_SUFFIX:
        raise CheckpointError(
            f"{shown} is a file but not a lucidrl checkpoint: load() reads the directory or "
            "the .zip file written by model.save(). Point at that."
        )
    if names is None and isinstance(file, CheckpointBytes):
        raise CheckpointError(
            f"corrupt checkpoint: {shown} holds no readable zip archive ({len(file.data)} bytes from its position: "
            "truncated or damaged, or not a checkpoint, or a checkpoint followed by other bytes such as a replay "
            "memory saved after it: seek to where model.save(f) began and read no further than its end, e.g. "
            "io.BytesIO(data[start:end])). model.save(f) writes one: save the model again, or load an earlier one."
        )
    if names is None:
        raise CheckpointError(
            f"corrupt checkpoint: {shown} is not a readable zip file (truncated or damaged). "
            "Save the model again, or load an earlier checkpoint."
        )
    if "data" in names and "policy.pth" in names:
        if not stream:
            raise CheckpointError(
                f"{shown} is a Stable-Baselines3 model, not a lucidrl checkpoint; convert it "
                f"(without unpickling) with lucidrl.from_sb3({shown}) or `lucidrl import-sb3 {file} OUT.zip`"
            )
        raise CheckpointError(
            f"{shown} holds a Stable-Baselines3 model, not a lucidrl checkpoint; convert it (without unpickling) "
            "with lucidrl.from_sb3(f), f seeked back to where the model begins, or from a file with "
            "`lucidrl import-sb3 PATH.zip OUT.zip`"
        )
    missing = [f for f in FILES if f not in names]
    if missing:
        written = "model.save(f)" if stream else "model.save('NAME.zip')"
        raise CheckpointError(
            f"{shown} is a zip but not a lucidrl checkpoint: it lacks {', '.join(missing)} "
            f"(it holds {', '.join(sorted(names)[:5]) or 'nothing'}). Point at {'bytes' if stream else 'a file'} "
            f"written by {written}."
        )
    try:
        with zipfile.ZipFile(source) as z:  # read() checks each member's CRC: a flipped byte is caught here
            start = min((info.header_offset for info in z.infolist()), default=0)
            if stream and start and not file.last_archive:  # type: ignore[union-attr]  # zipfile finds an archive by its end: other bytes (another save?) come first
                raise CheckpointError(
                    f"{shown} does not hold one checkpoint from its position: the zip there begins {start} bytes "
                    "further on, after other bytes (another checkpoint saved into the same object first?). Seek to "
                    "where the model.save(f) you want began, and load from there."
                )
            return {n: z.read(n) for n in FILES + OPTIONAL_FILES if n in names}
    except CheckpointError:  # (a ValueError: not to be taken for a damaged zip below)
        raise
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
            f"corrupt checkpoint: {shown} is a damaged zip ({e}). Save the model again, or load an earlier checkpoint."
        ) from None


# --------------------------------------------------------------------------- reading and checking
def _field_error(file: Path | str, field: str, expected: str, value: Any) -> CheckpointError:
    shown = repr(value)
    return CheckpointError(
        f"corrupt checkpoint: {file} field {field!r} should be {expected}, got "
        f"{shown if len(shown) < 80 else shown[:77] + '...'}"
    )


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate_documents(d: Path | CheckpointBytes, config: dict[str, Any], state: dict[str, Any]) -> None:
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
    path: str | os.PathLike | IO[bytes] | CheckpointBytes, extra: tuple[str, ...] = (), what: str = "load"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Read and check a checkpoint: ``(tensors, config, state)``. Never unpickles anything.

    ``path``: a directory, a ``.zip`` file, or a binary file object holding such a zip from its position on.
    ``extra``: names of ``OPTIONAL_FILES`` to read too, when present: their tensors are returned
    under ``"NAME/key"``. ``what``: the caller's name, for the messages about a file object.
    """
    d, members = _open(path, what)
    config, state = _documents(d, members)
    tensors = _read_tensors(d / FILES[0], None if members is None else members[FILES[0]])
    for name in extra:
        if members is not None and name in members:
            tensors.update({f"{name}/{k}": v for k, v in _read_tensors(d / name, members[name]).items()})
        elif members is None and isinstance(d, Path) and (d / name).is_file():
            tensors.update({f"{name}/{k}": v for k, v in _read_tensors(d / name).items()})
    return tensors, config, state


def read_config(path: str | os.PathLike | IO[bytes] | CheckpointBytes) -> dict[str, Any]:
    """A checkpoint's ``config.json`` (a directory, a zip or a file object), checked as ``load_checkpoint``
    checks it, without reading the weights. (A file object is read to its end.)"""
    return _documents(*_open(path, "read_config"))[0]


def _open(
    path: str | os.PathLike | IO[bytes] | CheckpointBytes, what: str = "load"
) -> tuple[Path | CheckpointBytes, dict[str, bytes] | None]:
    """Where the checkpoint at ``path`` lies (a killed save's copy recovered) and, for a zip, its files."""
    if isinstance(path, CheckpointBytes) or is_file_object(path):
        source = path if isinstance(path, CheckpointBytes) else read_file_object(path, what)
        return source, _read_zip(source)
    p = find_checkpoint(path)  # type: ignore[arg-type]  # (a path: file objects went above)
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


def _documents(d: Path | CheckpointBytes, members: dict[str, bytes] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.json`` and ``state.json`` of the checkpoint at ``d`` (``members``: a zip's files), checked."""
    docs = []
    for name in FILES[1:]:
        try:
            if members is not None:
                obj = json.loads(members[name])
            else:
                assert isinstance(d, Path)
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
            f"{describe(d)} was written by lucidrl {state.get('lucidrl_version', '?')} in checkpoint format {version}; "
            f"this lucidrl reads formats up to {FORMAT_VERSION}. Upgrade: pip install -U lucidrl"
        )
    validate_documents(d, config, state)
    return config, state


def _read_tensors(file: Path | str, data: bytes | None = None) -> dict[str, torch.Tensor]:
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
