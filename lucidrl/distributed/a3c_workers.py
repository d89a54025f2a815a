"""A3C's actor-learners on Ray: the driver's side of the asynchronous protocol (``lucidrl.algos.a3c``).

``ActorLearners(worker_class, args)`` starts one Ray actor of ``worker_class`` per tuple of ``args``
(one CPU each) in a :class:`lucidrl.distributed.WorkerSession`. The driver keeps every
worker busy: ``submit(k, *args)`` starts ``run(*args)`` on worker k, ``next()`` returns the result of
whichever worker finishes first (``ray.wait``). What a worker computes, and what the driver does with
it, is the algorithm's business (``A3CWorker.run``, ``A3C.learn``); here are only the start, the
waiting, the errors and the end.

An exception in a worker is raised in the driver as the lucidrl error it was (an ``EnvError`` from
its env), or as a ``TrainingError`` naming it; a worker whose process dies stops the run with a
``TrainingError`` (checkpoints already written are kept). Segments in flight when training stops are
dropped: their steps were never applied, so they are not counted.
"""

from __future__ import annotations

from typing import Any

import ray

from lucidrl.distributed import WorkerSession, close_workers, env_registration, open_worker_session, register
from lucidrl.distributed.rollout_workers import check_env_source
from lucidrl.errors import LucidRLError, TrainingError

__all__ = ["ActorLearners", "check_env_source"]

RESULT_TIMEOUT_S = 120.0
"""How long the driver waits for any worker's result (the first one includes starting the workers)."""


class Worker:
    """The Ray actor around one ``worker_class(*args)``, which it builds in ``start()``, not in its ``__init__``:
    an error while building (an env that cannot be made) then reaches the driver as the error it was; raised in
    an actor's ``__init__``, it would come back as an ``ActorDiedError`` holding only its traceback's text."""

    def __init__(self, worker_class: type, args: tuple):
        self.worker_class, self.args = worker_class, args
        self.worker: Any = None

    def start(self, specs: list) -> None:
        for spec in specs:  # env ids the driver's script registered: unknown in this process otherwise
            register(spec)
        self.worker = self.worker_class(*self.args)

    def run(self, *args: Any) -> Any:
        return self.worker.run(*args)


class ActorLearners:
    """K Ray actors of ``worker_class``, and the results of their ``run`` calls in the order they finish."""

    def __init__(self, worker_class: type, worker_args: list[tuple], address: str | None = None, what: str = "A3C"):
        k = len(worker_args)
        self.what, self.workers, self.pending = what, [], {}  # type: str, list[Any], dict[Any, Any]
        # released by close(): a local Ray started for workers ends with the last collector or A3C run using it
        self._session: WorkerSession | None = open_worker_session(k, f"{what} with n_workers={k}", address, what=what)
        actor: Any = ray.remote(num_cpus=1, max_restarts=0)(Worker)
        registered = (env_registration(a) for args in worker_args for a in args)  # None unless a registered env id
        specs = list({spec.id: spec for spec in registered if spec is not None}.values())
        try:
            self.workers = [actor.remote(worker_class, args) for args in worker_args]
            # all workers built (envs made and reset) before any segment starts: none is lapped while starting
            self._wait_ready([w.start.remote(specs) for w in self.workers])
        except BaseException:  # no `with` block to close this yet: stop the workers and release Ray now
            self.close()
            raise

    def _wait_ready(self, refs: list) -> None:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=RESULT_TIMEOUT_S)
        if len(ready) < len(refs):
            free = ray.available_resources().get("CPU", 0)
            raise TrainingError(
                f"{self.what}'s workers did not start within {RESULT_TIMEOUT_S:g} s: the Ray cluster has "
                f"{free:g} free CPUs for {len(refs)} workers (one CPU each); lower n_workers or free CPUs"
            )
        for k, ref in enumerate(refs):
            self.pending[ref] = k
            self.next()  # raises a worker's start-up error (e.g. its env cannot be made) as a lucidrl error

    def submit(self, k: int, *args: Any) -> None:
        """Start ``run(*args)`` on worker ``k``."""
        self.pending[self.workers[k].run.remote(*args)] = k

    def next(self) -> tuple[int, Any]:
        """``(k, result)`` of the first worker to finish among those submitted."""
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=RESULT_TIMEOUT_S)
        if not ready:
            raise TrainingError(
                f"no {self.what} worker returned a result within {RESULT_TIMEOUT_S:g} s: the Ray cluster "
                f"has {ray.available_resources().get('CPU', 0):g} free CPUs for {len(self.workers)} "
                "workers (one CPU each); lower n_workers or free CPUs"
            )
        k = self.pending.pop(ready[0])
        try:
            return k, ray.get(ready[0])
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, LucidRLError):
                raise type(cause)(f"(in {self.what} worker {k}) {cause}") from None
            raise TrainingError(
                f"{self.what} worker {k} failed: {type(cause or e).__name__}: {cause or e}; training "
                "stopped, checkpoints already saved are kept"
            ) from None
        except ray.exceptions.RayError as e:  # the worker's process or node is gone
            raise TrainingError(
                f"{self.what} worker {k} was lost ({type(e).__name__}); training stopped, checkpoints "
                "already saved are kept. See the Ray logs (/tmp/ray/session_latest/logs)"
            ) from None

    def close(self) -> None:
        """Stop the workers (their segments in flight are dropped) and a local Ray instance started here."""
        workers, session = self.workers, self._session
        self.workers, self.pending, self._session = [], {}, None
        close_workers(workers, session)

    def __enter__(self) -> ActorLearners:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
