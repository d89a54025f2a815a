"""Ray: runs and sweeps as tasks, tuning with Ray Tune and Optuna, rollout-worker actors.

Nothing here is imported by ``import lucidrl``: Ray is an optional extra
(``pip install 'lucidrl[ray]'``) and a local run never needs it. Runs, sweeps and tuning go through
:func:`ray_session`, which joins the cluster at ``address`` (``ray start --head`` prints it) or,
without one, starts a local Ray instance and shuts it down when the work is done. Worker actors
(rollout workers, A3C), which live as long as a model, go through :class:`WorkerSession`: a local
instance started for them is shared by every model's workers and shut down when the last of them
ends. When Ray is already initialised in this process (a notebook, a test fixture, a script that
called ``ray.init``), that session is used and left running.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from lucidrl.errors import ConfigError

INSTALL_HINT = "pip install 'lucidrl[ray]'"


def require_ray(what: str = "this") -> Any:
    """Import and return the ``ray`` module, or raise a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} runs on Ray, which is not installed; install it with {INSTALL_HINT}") from None
    return ray


CONNECT_TIMEOUT_S = 5.0


def env_registration(env: Any) -> Any:
    """The Gymnasium registration (``EnvSpec``) of env id ``env`` in this process, to send to Ray workers; else None.

    An id the user's script registered (``gym.register("MyEnv-v0", entry_point=MyEnv)``) exists only in the
    driver's process: a Ray worker is another process, which never ran that line. With the registration it
    can build the env by its id, as the driver does (:func:`register`)."""
    import gymnasium as gym

    from lucidrl.envs.atari import is_atari_spec

    spec = gym.registry.get(env) if isinstance(env, str) else None
    return None if spec is None or is_atari_spec(spec) else spec  # Atari ids: each process registers them itself


def register(spec: Any) -> None:
    """In a Ray worker: register the driver's ``spec`` (:func:`env_registration`) unless its id is known here."""
    import gymnasium as gym

    if spec is not None and spec.id not in gym.registry:
        gym.registry[spec.id] = spec


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a ConfigError unless something listens at ``address`` (``host:port`` or ``ray://host:port``).

    ``ray.init`` keeps retrying an address where nothing answers for minutes; this one TCP connection,
    bounded by ``timeout`` seconds, fails fast instead. ``"auto"`` and addresses without a port are left to Ray.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"could not connect to the Ray cluster at {address!r}: nothing answers there ({e}); "
            "check that `ray start --head` ran on that machine, that the address is the one it printed "
            "and that no firewall blocks the port"
        ) from None


def check_address(address: str | None) -> tuple[str | None, bool]:
    """(the address Ray will join, whether it came from RAY_ADDRESS); a ConfigError, in seconds, when nothing
    answers there. ``ray.init(address=None)`` joins the cluster the RAY_ADDRESS variable names, where it is set:
    read here, a stale value is checked like a given address (ray.init waited minutes on one, or refused
    num_cpus). Callers check before they write anything (a run directory), so that a bad address leaves none.
    Where this process already runs a Ray session, that session is used whatever the address (``ray_session``),
    and nothing is checked."""
    ray = sys.modules.get("ray")  # (not imported: no session can be running)
    if ray is not None and ray.is_initialized():
        return address, False
    from_env = os.environ.get("RAY_ADDRESS") if address is None else None
    address = from_env or address
    if address is not None:
        try:
            check_reachable(address)
        except ConfigError as e:
            if not from_env:
                raise
            raise ConfigError(
                f"{e} (that address is the RAY_ADDRESS environment variable's: unset it to start a local Ray "
                "instance, or set it to the running cluster's address)"
            ) from None
    return address, bool(from_env)


def _connect(ray: Any, address: str | None, num_cpus: int | None, what: str) -> None:
    """``ray.init`` for ``address`` (``None``: a local instance of ``num_cpus`` CPUs), its failures as one
    ConfigError."""
    address, from_env = check_address(address)
    # a local instance needs no login token; on a cluster the user's own settings apply
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus if address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:  # RayError: e.g. a bad token
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        where += " (the RAY_ADDRESS environment variable's)" if from_env else ""
        hint = (
            "check that `ray start --head` ran there and that the address is the one it printed"
            if address
            else "see docs/scale.md, 'Reading a Ray failure'"
        )
        raise ConfigError(f"could not connect to {where}: {e}; {hint}") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, what: str = "this") -> Iterator[Any]:
    """Yield the ``ray`` module with a connected session.

    ``address``: an existing cluster (``"auto"``, ``"ray://host:10001"`` or ``"host:6379"``);
    ``None`` starts a local instance with ``num_cpus`` CPUs (all of this machine's by default).
    A session this function started is shut down on exit; one that was already running is kept.
    """
    ray = require_ray(what)
    if ray.is_initialized():
        yield ray
        return
    _connect(ray, address, num_cpus, what)
    try:
        yield ray
    finally:
        ray.shutdown()


class WorkerSession:
    """The Ray session that worker actors (rollout workers, A3C's actor-learners) run in; ``close()`` releases it.

    Workers live as long as a model's collector, so several models may hold workers at once, and they end in
    any order. A session Ray already had (the user's ``ray.init``) is used and left running. One that lucidrl
    starts for workers (a :func:`ray_session`) is shared by every ``WorkerSession`` opened while it runs, and
    shut down when the last of them closes: one model's workers ending never stops another model's.
    """

    started: Any = None  # a token for the Ray lucidrl started for worker actors, while WorkerSessions use it
    users = 0  # the WorkerSessions open in it
    lock = threading.Lock()  # __del__ may run on any thread

    def __init__(self, address: str | None, num_cpus: int, what: str):
        self.joined: Any = None  # the token of the started Ray this session counts in (None: the user's own Ray)
        ray = require_ray(what)
        with WorkerSession.lock:
            if not ray.is_initialized():  # start one (a local instance, or join the cluster at address)
                _connect(ray, address, num_cpus, what)
                WorkerSession.started, WorkerSession.users = object(), 0
            if WorkerSession.started is not None:
                self.joined = WorkerSession.started
                WorkerSession.users += 1

    def close(self) -> None:
        """Release the session: the last one out shuts down the Ray started for workers. A session whose Ray was
        shut down by someone else meanwhile (and perhaps started again for other workers) releases nothing."""
        with WorkerSession.lock:
            joined, self.joined = self.joined, None
            if joined is None or joined is not WorkerSession.started:
                return
            WorkerSession.users -= 1
            if WorkerSession.users == 0:
                WorkerSession.started = None
                require_ray().shutdown()

    def __del__(self) -> None:  # a collector dropped without close()
        try:
            self.close()
        except Exception:  # at interpreter exit Ray may already be torn down: nothing left to release
            pass


FREE_CPU_WAIT_S = 5.0
"""How long a new set of workers waits for CPUs to free on the local Ray lucidrl started (stopped workers' CPUs
show as free a moment after ray.kill)."""


def open_worker_session(n_workers: int, setting: str, address: str | None = None, what: str = "this") -> WorkerSession:
    """A :class:`WorkerSession` for ``n_workers`` actors of one CPU each (:func:`close_workers` releases it).
    ``setting`` names the option to lower in the error raised when the cluster has fewer CPUs than workers
    (an actor that cannot be placed would wait forever)."""
    session = WorkerSession(address, num_cpus=max(os.cpu_count() or 1, n_workers), what=what)
    ray = require_ray()
    cpus = ray.cluster_resources().get("CPU", 0)
    name = setting.split("=")[0].split()[-1]
    if cpus < n_workers:
        session.close()
        raise ConfigError(
            f"{setting} needs {n_workers} CPUs (one per worker), but the Ray cluster has {cpus:g}; "
            f"lower {name} or add nodes"
        )
    if session.joined is not None and address is None and not os.environ.get("RAY_ADDRESS"):
        # the local instance lucidrl started: no node can join it, so workers that find no free CPU would wait
        # for ever; resources of workers just stopped take a moment to show as free
        deadline = time.monotonic() + FREE_CPU_WAIT_S
        while (free := ray.available_resources().get("CPU", 0)) < n_workers and time.monotonic() < deadline:
            time.sleep(0.2)
        if free < n_workers:
            session.close()
            raise ConfigError(
                f"{setting} needs {n_workers} free CPUs, but the local Ray instance has {free:g} free: other "
                "models' workers hold the rest (a model keeps its rollout or A3C workers until it is deleted, "
                f"e.g. `del model`, or given another env with set_env); free them, or lower {name}"
            )
    return session


def close_workers(workers: list, session: WorkerSession | None) -> None:
    """Kill the actors ``workers`` and release ``session`` (the last one out shuts down a Ray lucidrl started)."""
    ray = require_ray()
    for w in workers:
        try:
            ray.kill(w, no_restart=True)
        except Exception:  # already dead, or Ray already shut down: nothing left to stop
            pass
    if session is not None:
        session.close()
