"""Runs and sweeps on Ray: every job (one training run) is a Ray task.

    lucidrl compare ppo a2c trpo --env CartPole-v1 --seeds 5 --backend ray                 # local Ray instance
    lucidrl compare ppo a2c trpo --env CartPole-v1 --seeds 5 --backend ray --address auto  # a running cluster

``lucidrl.compare`` hands its jobs here when ``backend="ray"``. Each job becomes one Ray task that
reserves ``cpus_per_run`` CPUs and calls the same function the local backend calls in its worker
processes (``compare.run_job``), so a run computes the same thing wherever it is scheduled (one torch
thread, the same seeds: the same weights, bit for bit).

Where the files go. A run writes its directory (``OUT/runs/NAME``) on the filesystem of the machine
that runs the task. Before submitting anything, the driver writes a marker file with a random token
into ``OUT``; each task looks for it:

* the task can read the marker (this machine, or a node that mounts ``OUT`` at the same path):
  the run writes straight into its run directory, and the task returns only the run's result dict;
* it cannot (another node, no shared filesystem): the run trains in a temporary directory on that
  node, and the task returns the directory's files as one gzipped tar (tens to hundreds of KB for a
  CartPole run); the driver unpacks it into the run directory.

Either way the driver ends with the same files as a local comparison. A task that fails (an exception
in training, a worker killed by the OS or by Ray's memory monitor, a node lost) does not stop the others:
they run to the end and stay in ``OUT`` to be reused, and then a ``LucidRLError`` names each failed run.
Tasks are not retried by Ray (``max_retries=0``): run the same command again and only the missing runs train.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lucidrl.distributed import env_registration, ray_session, register, require_ray
from lucidrl.errors import ConfigError, LucidRLError

MARKER = ".lucidrl-ray-driver"


def pack_dir(path: str | os.PathLike) -> bytes:
    """The files under ``path`` as the bytes of a gzipped tar (names relative to ``path``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(path), arcname=".")
    return buf.getvalue()


def unpack_dir(data: bytes, path: str | os.PathLike) -> None:
    """Write the files of ``pack_dir``'s tar under ``path`` (only regular files and directories inside it)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(path, filter="data")


def _can_read(marker: str, token: str) -> bool:
    try:
        return Path(marker).read_text() == token
    except OSError:
        return False


def run_task(
    fn: Callable[[Any], dict[str, Any]],
    job: Any,
    marker: str,
    token: str,
    paths: Sequence[str],
    specs: Sequence[Any] = (),
) -> tuple[dict[str, Any], bytes | None]:
    """The body of one Ray task: ``fn(job)``, into the job's own run directory when the driver's
    filesystem is visible here, else into a temporary one whose files are returned as a tar."""
    for p in paths:  # the driver's import path, where it exists here (env wrappers beside the driver's script)
        if p not in sys.path and os.path.isdir(p):
            sys.path.append(p)
    for spec in specs:  # env ids the driver's script registered (gym.register): unknown here otherwise
        register(spec)
    if _can_read(marker, token):
        return fn(job), None
    with tempfile.TemporaryDirectory(prefix="lucidrl-run-") as tmp:
        staged = dataclasses.replace(job, run_dir=os.path.join(tmp, "run"))
        result = fn(staged)
        return result, pack_dir(staged.run_dir)


def _failure(ray: Any, name: str, job: Any, e: BaseException) -> str:
    """One line naming the run and what went wrong, from a Ray exception."""
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = getattr(e, "cause", None)
        if isinstance(cause, LucidRLError):
            return f"{name}: {cause}"
        if cause is not None:
            return f"{name} failed in {job.run_dir}: {cause!r}"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, ray.exceptions.OutOfMemoryError):
        return (
            f"{name}: Ray's memory monitor killed the worker running it (the node ran out of memory); "
            f"raise --cpus-per-run so fewer runs share a node, or use nodes with more memory ({first})"
        )
    if isinstance(
        e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError)
    ):
        return (
            f"{name}: the Ray worker running it died ({type(e).__name__}: {first}); the OS may have "
            "killed it for memory (see `dmesg`) or its node left the cluster"
        )
    return f"{name}: Ray could not run it ({type(e).__name__}: {first})"


def run_on_ray(
    fn: Callable[[Any], dict[str, Any]],
    jobs: Sequence[Any],
    out: str | os.PathLike,
    done: Callable[[Any, dict[str, Any]], None],
    name: Callable[[Any], str] = str,
    address: str | None = None,
    cpus_per_run: float = 1,
    max_in_flight: int | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Run ``fn(job)`` for every job as a Ray task of ``cpus_per_run`` CPUs; call ``done(job, result)`` as each ends.

    ``jobs``: dataclasses with a ``run_dir`` field under ``out`` (``compare.Job``); ``fn`` must be importable
    by the Ray workers (a module-level function of an installed package). ``address``: the cluster to join
    (``None``: a local Ray instance, started here and shut down after). ``max_in_flight``: at most this many
    tasks submitted at once (default: all; Ray runs as many as the CPUs allow). Raises a ``LucidRLError``
    naming every failed run once the other runs have ended.
    """
    if not cpus_per_run > 0:
        raise ConfigError(f"cpus_per_run must be a positive number of CPUs, got {cpus_per_run}")
    if max_in_flight is not None and max_in_flight < 1:
        raise ConfigError(f"the number of runs at a time must be >= 1, got {max_in_flight}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    marker = out / MARKER
    marker.write_text(token)
    paths = [str(Path(p).resolve()) for p in sys.path if p and os.path.isdir(p)]
    registered = (env_registration(getattr(job, "env_id", None)) for job in jobs)
    specs = list({spec.id: spec for spec in registered if spec is not None}.values())
    already_running = require_ray("compare --backend ray").is_initialized()
    where = (
        "the running Ray session"
        if already_running
        else f"the Ray cluster at {address}"
        if address
        else "a local Ray instance (started here)"
    )
    try:
        with ray_session(address, what="compare --backend ray") as ray:
            cpus = ray.cluster_resources().get("CPU", 0)
            biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            started_here = not already_running and address is None
            if biggest < cpus_per_run and started_here:  # a local instance never grows: the runs would wait forever
                raise ConfigError(
                    f"cpus_per_run={cpus_per_run:g} is more than the {cpus:g} CPUs of the local Ray instance "
                    f"started here (this machine's); lower --cpus-per-run to at most {cpus:g}, or run on a "
                    "cluster with bigger nodes (--address)"
                )
            log(f"training {len(jobs)} runs on {where} ({cpus:g} CPUs, {cpus_per_run:g} per run)")
            if biggest < cpus_per_run:
                log(f"  warning: no node has {cpus_per_run:g} CPUs; the runs wait until one joins the cluster")
            task = ray.remote(num_cpus=cpus_per_run, max_retries=0)(run_task)
            _drive(ray, task, fn, list(jobs), str(marker.resolve()), token, paths, specs, done, name, max_in_flight)
    finally:
        marker.unlink(missing_ok=True)


def _drive(ray, task, fn, jobs, marker, token, paths, specs, done, name, max_in_flight) -> None:
    waiting = list(reversed(jobs))  # popped from the end: submitted in the given order
    running: dict[Any, Any] = {}
    failures: list[str] = []
    try:
        while waiting or running:
            while waiting and (max_in_flight is None or len(running) < max_in_flight):
                job = waiting.pop()
                # the run directory as an absolute path of the driver's: a worker's working directory is the
                # one its node's Ray started in, so a relative OUT would land elsewhere on a cluster
                absolute = dataclasses.replace(job, run_dir=str(Path(job.run_dir).resolve()))
                running[task.remote(fn, absolute, marker, token, paths, specs)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ready[0])
            try:
                result, files = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                failures.append(_failure(ray, name(job), job, e))
                continue
            if files is not None:  # trained on a node that cannot see OUT: its files came back with the result
                unpack_dir(files, job.run_dir)
            done(job, result)
    except BaseException:  # Ctrl-C or an error here: stop the tasks still queued or running
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    if failures:
        n = len(failures)
        raise LucidRLError(
            f"{n} of {len(jobs)} runs failed on Ray (the others finished and are kept in their run "
            "directories; run the same command again to retry only the failed ones):\n  " + "\n  ".join(failures)
        )
