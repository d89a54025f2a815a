"""Rollout workers: the on-policy rollouts (PPO, A2C, TRPO, VPG) collected by K Ray actors.

``rollout_workers=K`` splits the ``n_envs`` copies of the env between K actors (worker w steps the
copies ``split(n_envs, K)[w]``, consecutive ones, the first ``n_envs % K`` workers one more). The
learner stays in the driver: each rollout it sends every worker the current weights (one object
in Ray's store, shared by all) and the worker's columns of the rollout's action noise, drawn from
the model's generator exactly as ``RolloutCollector`` draws it; each worker steps its copies for T
steps and sends back its segment; the driver puts the segments side by side and finishes the
rollout as the local collector does. The update is the one of a local run.

What makes the rollout equal to a local one (``vectorization="sync"``, ``normalize_obs`` off,
``device="cpu"``), transition for transition:

* env i is built as ``make_vec_env`` builds it in a ``SyncVectorEnv`` (same-step autoreset) and reset
  with seed ``seed + i``, as ``SyncVectorEnv.reset(seed=seed)`` does locally;
* the policy's outputs for a row of a batch depend on the batch's size (the matrix products block
  differently for 2 rows and for 4), so a worker evaluates π and V on a batch of all ``n_envs`` rows
  with its own rows at their places (the others zero): row i is computed as the local collector
  computes it, bit for bit;
* what needs every env at once is done in the driver, on the joined segments: the log-probabilities,
  the reward scaling (``normalize_reward``: it changes no action, so the driver scales the raw
  rewards step by step as locally), V(final observation) of the truncated copies of each step, and
  the order of the finished episodes.

Observation normalisation needs the statistics of every env at every step, which no worker has
without a round trip per step. With ``normalize_obs``, a worker starts each rollout from the
driver's statistics and updates its own copy with its own copies' observations as it steps; it
returns the raw observations, and the driver adds them to its statistics step by step (all N rows
of step t at once), so the statistics after a rollout are what the local collector's would be for
these observations, but the observations the policy saw were normalised with per-worker
statistics: such a rollout is not equal to a local one (docs/scale.md).

A worker that dies (its process or node lost) is replaced: a new actor rebuilds its envs, reset with
a seed derived from (seed, restart count), and collects that segment again with the same weights and
noise; after ``MAX_RESTARTS`` replacements the run stops with a TrainingError. An exception in a
worker's env is raised in the driver as the lucidrl error it was, or a TrainingError naming it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
from gymnasium.envs.registration import EnvSpec

from lucidrl.distributed import (
    WorkerSession,
    close_workers,
    env_registration,
    open_worker_session,
    register,
    require_ray,
)
from lucidrl.envs import make_vec_env
from lucidrl.envs.normalize import ObsNormalizer
from lucidrl.errors import ConfigError, EnvError, LucidRLError, TrainingError
from lucidrl.rollout import Rollout, VectorStepper, rollout_policy

MAX_RESTARTS = 3
"""Replacements of dead workers a collector makes before the run stops with a TrainingError."""
PLACEMENT_TIMEOUT_S = 120.0
"""How long the workers may take to start (placed on the cluster, envs built and reset)."""


def split(n_envs: int, k: int) -> list[tuple[int, int]]:
    """The copies of each of the ``k`` workers: ``[(lo, hi), ...]``, consecutive, the first ``n_envs % k`` one more."""
    base, extra = divmod(n_envs, k)
    bounds, lo = [], 0
    for w in range(k):
        hi = lo + base + (w < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def check_env_source(env: Any) -> None:
    """An EnvError unless ``env`` is something a worker can rebuild its copies from: an env id or a picklable
    callable."""
    if isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        kind = "a VectorEnv" if isinstance(env, gym.vector.VectorEnv) else "an env instance"
        raise EnvError(
            f"rollout_workers needs an env each worker can build for itself, got {kind} "
            f"({type(env).__name__}); pass the env id (e.g. 'HalfCheetah-v5') or a picklable callable "
            "that builds one env (a module-level function or functools.partial), or set rollout_workers=0"
        )
    if not isinstance(env, str) and not callable(env):
        raise EnvError(f"rollout_workers cannot build an env from {type(env).__name__}; pass an env id or a callable")
    sent = env_registration(env) if isinstance(env, str) else env
    try:
        ray.cloudpickle.dumps(sent)
    except Exception as e:
        what = f"the registration of env id {env!r}" if isinstance(env, str) else f"the env callable {env!r}"
        fix = (
            "register it with an entry point and keyword arguments that pickle"
            if isinstance(env, str)
            else "pass the env id, or a callable that pickles"
        )
        raise EnvError(
            f"{what} cannot be sent to a rollout worker ({type(e).__name__}: {e}); {fix} "
            "(a module-level class or function, or functools.partial of one), or set rollout_workers=0"
        ) from None


class RolloutWorker:
    """One worker: copies ``lo..hi-1`` of the vector env, a CPU copy of the agent, a copy of the obs normaliser."""

    def __init__(
        self,
        env: Any,
        n_envs: int,
        lo: int,
        hi: int,
        agent: torch.nn.Module,
        policy: Callable,
        obs_normalizer: ObsNormalizer | None,
        vectorization: str,
        spec: EnvSpec | None = None,
    ):
        torch.set_num_threads(1)
        self.env, self.vectorization, self.spec = env, vectorization, spec
        self.n_envs, self.lo, self.hi = n_envs, lo, hi
        self.agent, self.policy, self.obs_normalizer = agent, policy, obs_normalizer
        self.venv: gym.vector.VectorEnv | None = None
        self.stepper: VectorStepper | None = None

    def _build(self) -> None:
        """Make this worker's copies. Done in the first ``reset``, not in ``__init__``: an error here (an env that
        cannot be made) then reaches the driver as the error it was; raised in an actor's ``__init__``, it would
        come back as an ``ActorDiedError`` holding only its traceback's text."""
        register(self.spec)
        self.venv = make_vec_env(
            self.env, self.hi - self.lo, seed=None, vectorization="async" if self.vectorization == "async" else "sync"
        )
        space = self.venv.single_action_space
        self.action_bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self.action_dtype = space.dtype if isinstance(space, gym.spaces.Box) else None  # e.g. float16 Box

    def reset(self, seed: int, stats: tuple | None) -> np.ndarray:
        """Reset copy i with ``seed + i`` (i: its index among all ``n_envs``); returns the raw first observations."""
        if self.venv is None:
            self._build()
        assert self.venv is not None
        self.stepper = VectorStepper(self.venv, seed=[seed + i for i in range(self.lo, self.hi)])
        raw = self.stepper.obs
        self.obs = raw if self.obs_normalizer is None else self._normalizer(stats).update_and_normalize(raw)
        return raw

    def _normalizer(self, stats: tuple | None) -> ObsNormalizer:
        norm = self.obs_normalizer
        assert norm is not None and stats is not None  # (called where the model normalises: the driver's statistics)
        mean, var, count = norm.rms.numpy_views()
        mean[...], var[...], count[...] = stats
        return norm

    @torch.no_grad()
    def collect(self, state: dict, noise: torch.Tensor, stats: tuple | None) -> dict:
        """T steps of this worker's copies with the weights ``state`` and the noise columns ``noise`` [T, n, ...]."""
        self.agent.load_state_dict(state)
        act = self.policy(self.agent)
        obs_norm = None if stats is None else self._normalizer(stats)
        lo, hi, stepper = self.lo, self.hi, self.stepper
        assert stepper is not None  # (reset made it)
        T, n = noise.shape[0], hi - lo
        obs = self.obs
        pad_obs = np.zeros((self.n_envs, *obs.shape[1:]), dtype=obs.dtype)  # all N rows: see the module docstring
        pad_noise = torch.zeros((self.n_envs, *noise.shape[2:]), dtype=noise.dtype)
        out: dict[str, Any] = {
            "obs": np.empty((T, *obs.shape), dtype=obs.dtype),
            "rewards": np.empty((T, n)),
            "terminated": np.empty((T, n), dtype=bool),
            "truncated": np.empty((T, n), dtype=bool),
            "raw_obs": None if obs_norm is None else [],
            "episodes": [],
            "finals": [],
        }
        actions: list[torch.Tensor] = []
        params: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for t in range(T):
            out["obs"][t] = obs
            pad_obs[lo:hi], pad_noise[lo:hi] = obs, noise[t]
            action, p, v = act(torch.from_numpy(pad_obs), pad_noise)
            action = action[lo:hi]
            actions.append(action)
            params.append(p[lo:hi])
            values.append(v[lo:hi])
            env_action = action.numpy()
            if self.action_bounds is not None:
                env_action = np.clip(env_action, *self.action_bounds).astype(self.action_dtype, copy=False)
            tr = stepper.step(env_action)
            if obs_norm is None:
                obs = tr.obs
            else:
                out["raw_obs"].append(tr.obs)
                obs = obs_norm.update_and_normalize(tr.obs)
            out["rewards"][t], out["terminated"][t], out["truncated"][t] = tr.reward, tr.terminated, tr.truncated
            if tr.episode_returns:
                out["episodes"] += [
                    (t, lo + int(i), ret, n)
                    for i, ret, n in zip(tr.episode_rows, tr.episode_returns, tr.episode_lengths)
                ]
            for i, final_obs in tr.final_obs.items():
                if tr.truncated[i]:  # V(final observation) is computed by the driver, on every env's of step t
                    final = torch.from_numpy(np.asarray(final_obs)[None])
                    out["finals"].append((t, lo + i, (final if obs_norm is None else obs_norm(final))[0].numpy()))
        self.obs = obs
        pad_obs[lo:hi] = obs
        out["last_value"] = act(torch.from_numpy(pad_obs), None)[2][lo:hi].clone()
        out["actions"], out["params"], out["values"] = torch.stack(actions), torch.stack(params), torch.stack(values)
        if out["raw_obs"] is not None:
            out["raw_obs"] = np.stack(out["raw_obs"])
        return out


class RayRolloutCollector:
    """``RolloutCollector``'s interface (``collect(agent, n_steps) -> Rollout``, ``env``) over K Ray actors."""

    def __init__(
        self,
        env_source: Any,
        env: gym.vector.VectorEnv,
        n_workers: int,
        agent: torch.nn.Module,
        device: torch.device,
        seed: int,
        generator: torch.Generator | None,
        obs_normalizer=None,
        reward_scaler=None,
        policy: Callable = rollout_policy,
        vectorization: str = "auto",
        log: Callable[[str], None] = print,
    ):
        require_ray("rollout_workers")
        if vectorization == "native":
            raise ConfigError(
                "rollout_workers steps each worker's copies in a SyncVectorEnv (one env per copy, "
                "seeded seed + i); vectorization='native' cannot be split between workers: use "
                "vectorization='auto', 'sync' or 'async'"
            )
        check_env_source(env_source)
        self.env, self.n_envs, self.device = env, env.num_envs, torch.device(device)
        if not 1 <= n_workers <= self.n_envs:
            raise ConfigError(f"rollout_workers={n_workers} must lie between 1 and n_envs={self.n_envs}")
        self.generator, self.policy, self.log = generator, policy, log
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.bounds = split(self.n_envs, n_workers)
        self.seed, self.restarts, self.max_restarts = seed, 0, MAX_RESTARTS
        self.traffic: dict[str, int] = {}  # bytes of the last rollout: weights, noise, segments (sum of arrays' sizes)
        self.workers: list = []
        # released by close(): a local Ray started for workers ends with the last collector or A3C run using it
        self._session: WorkerSession | None = open_worker_session(
            n_workers, f"rollout_workers={n_workers}", what="rollout_workers"
        )
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        cpu_agent = copy.deepcopy(agent).cpu()
        self._worker_args = (
            env_source,
            self.n_envs,
            cpu_agent,
            policy,
            None if obs_normalizer is None else copy.deepcopy(obs_normalizer).cpu(),
            vectorization,
            env_registration(env_source),
        )
        try:
            self.workers = [self._start(w) for w in range(n_workers)]
            initial = self._wait([w.reset.remote(seed, self._stats()) for w in self.workers], "start")
        except BaseException:  # no collector to close later: stop the workers and release Ray now
            self.close()
            raise
        self._update_stats([np.concatenate(initial)])

    def _start(self, w: int):
        env_source, n_envs, agent, policy, obs_norm, vectorization, spec = self._worker_args
        lo, hi = self.bounds[w]
        return self._actor_class.remote(env_source, n_envs, lo, hi, agent, policy, obs_norm, vectorization, spec)

    def _stats(self) -> tuple | None:
        """The driver's observation statistics (mean, var, count) as NumPy copies, for the workers."""
        if self.obs_normalizer is None:
            return None
        rms = self.obs_normalizer.rms
        return tuple(b.detach().cpu().numpy().copy() for b in (rms.mean, rms.var, rms.count))

    def _update_stats(self, batches) -> None:
        """Add raw observations to the driver's statistics, one batch of every env's rows per step (as locally)."""
        if self.obs_normalizer is not None:
            for batch in batches:
                self.obs_normalizer.update(batch)

    def _wait(self, refs: list, what: str) -> list:
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PLACEMENT_TIMEOUT_S)
            if len(ready) < len(refs):
                raise TrainingError(
                    f"rollout workers did not {what} within {PLACEMENT_TIMEOUT_S:g} s: the Ray cluster has "
                    f"{ray.available_resources().get('CPU', 0):g} free CPUs for {len(self.workers)} "
                    "workers (one CPU each); lower rollout_workers or free CPUs (another model's rollout "
                    "workers keep theirs until that model is deleted or given another env with set_env)"
                )
            return ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            raise self._worker_error(e) from None
        except ray.exceptions.RayError as e:  # a worker lost while starting: no segment to collect again yet
            raise TrainingError(
                f"a rollout worker could not {what} ({type(e).__name__}: {e}); see the Ray logs "
                "(/tmp/ray/session_latest/logs)"
            ) from None

    def _worker_error(self, e) -> LucidRLError:
        cause = getattr(e, "cause", None)
        if isinstance(cause, LucidRLError):
            return type(cause)(f"(in a rollout worker) {cause}")
        return TrainingError(
            f"a rollout worker failed: {type(cause or e).__name__}: {cause or e}; training stopped, "
            "checkpoints already saved are kept"
        )

    @torch.no_grad()
    def collect(self, agent, n_steps: int) -> Rollout:
        """T = ``n_steps`` steps in each env with ``agent``'s policy, collected by the workers."""
        T, N, head = n_steps, self.n_envs, agent.head
        noise = head.noise((T, N), self.generator, self.device).cpu()  # the whole rollout's, as RolloutCollector
        state = {k: v.detach().cpu() for k, v in agent.state_dict().items()}
        state_ref, stats = ray.put(state), self._stats()
        columns = [noise[:, lo:hi].clone() for lo, hi in self.bounds]  # a view would pickle all of noise's storage
        refs = [w.collect.remote(state_ref, cols, stats) for w, cols in zip(self.workers, columns)]
        segments = []
        for w, ref in enumerate(refs):
            while True:
                try:
                    segments.append(ray.get(ref))
                    break
                except ray.exceptions.RayTaskError as e:
                    raise self._worker_error(e) from None
                except ray.exceptions.RayActorError as e:  # the worker's process is gone: replace it, collect again
                    ref = self._restart(w, e).collect.remote(state_ref, columns[w], stats)
                except ray.exceptions.RayError as e:  # e.g. the segment was lost with its node
                    raise TrainingError(
                        f"rollout worker {w}'s segment could not be fetched ({type(e).__name__}: {e}); "
                        "training stopped, checkpoints already saved are kept"
                    ) from None
        self.traffic = {
            "weights": sum(v.nbytes for v in state.values()),
            "noise": noise.nbytes,
            "segments": sum(_nbytes(s) for s in segments),
        }
        return self._join(agent, segments)

    def _restart(self, w: int, error: Exception):
        """Replace dead worker ``w``: new actor, its envs reset with a seed derived from (seed, restart count)."""
        if self.restarts >= self.max_restarts:
            raise TrainingError(
                f"rollout worker {w} died ({type(error).__name__}) after {self.restarts} replacements of "
                "dead workers; training stopped, checkpoints already saved are kept. See the Ray logs "
                "(/tmp/ray/session_latest/logs) for why the worker process ended."
            )
        self.restarts += 1
        try:
            ray.kill(self.workers[w], no_restart=True)
        except Exception:
            pass
        seed = int(np.random.SeedSequence([self.seed, self.restarts]).generate_state(1)[0] % 2**31)
        lo, hi = self.bounds[w]
        self.log(
            f"rollout worker {w} (envs {lo}..{hi - 1}) died ({type(error).__name__}); replaced "
            f"(replacement {self.restarts} of at most {self.max_restarts}), its envs reset with seed {seed} + i, "
            "and its segment collected again"
        )
        self.workers[w] = self._start(w)
        initial = self._wait([self.workers[w].reset.remote(seed, self._stats())], "restart")
        self._update_stats(initial)
        return self.workers[w]

    def _join(self, agent, segments: list[dict]) -> Rollout:
        """The rollout of all N envs from the workers' segments, finished as ``RolloutCollector.collect``."""
        dev, head = self.device, agent.head

        def cat(key: str) -> torch.Tensor:
            parts = [s[key] for s in segments]
            if isinstance(parts[0], np.ndarray):
                return torch.from_numpy(np.concatenate(parts, axis=1)).to(dev)
            return torch.cat(parts, dim=1).to(dev)

        T = segments[0]["rewards"].shape[0]
        raw_rewards = np.concatenate([s["rewards"] for s in segments], axis=1)
        terminated = np.concatenate([s["terminated"] for s in segments], axis=1)
        truncated = np.concatenate([s["truncated"] for s in segments], axis=1)
        if self.reward_scaler is not None:  # as locally: step by step, every env's raw rewards at once
            rewards = np.stack(
                [self.reward_scaler.scale(raw_rewards[t], terminated[t] | truncated[t]) for t in range(T)]
            )
        else:
            rewards = raw_rewards.astype(np.float32)
        if self.obs_normalizer is not None:
            raw = np.concatenate([s["raw_obs"] for s in segments], axis=1)
            self._update_stats(raw[t] for t in range(T))
        act_buf, params_buf, val_buf = cat("actions"), cat("params"), cat("values")
        last_value = torch.cat([s["last_value"] for s in segments]).to(dev)
        next_values = torch.cat([val_buf[1:], last_value.unsqueeze(0)])
        finals: dict[int, list] = {}
        for s in segments:
            for t, i, x in s["finals"]:
                finals.setdefault(t, []).append((i, x))
        if finals:  # bootstrap from V(final observation), on each step's truncated envs together, as locally
            act = self.policy(agent)
            for t, rows in sorted(finals.items()):
                rows.sort(key=lambda r: r[0])
                final = torch.as_tensor(np.stack([x for _, x in rows]), device=dev)
                next_values[t, torch.as_tensor([i for i, _ in rows], device=dev)] = act(final, None)[2]
        episodes = sorted((e for s in segments for e in s["episodes"]), key=lambda e: (e[0], e[1]))
        return Rollout(
            obs=cat("obs"),
            actions=act_buf,
            rewards=torch.from_numpy(rewards).to(dev),
            terminated=torch.from_numpy(terminated).to(dev),
            truncated=torch.from_numpy(truncated).to(dev),
            values_old=val_buf,
            next_values=next_values,
            logprob_old=head.log_prob(params_buf, act_buf),
            params_old=params_buf,
            valid=None,
            episode_returns=[e[2] for e in episodes],
            episode_lengths=[e[3] for e in episodes],
        )

    def close(self) -> None:
        """Stop the workers and release Ray (a local instance started for workers ends with its last user)."""
        workers, session = getattr(self, "workers", []), getattr(self, "_session", None)
        self.workers, self._session = [], None
        close_workers(workers, session)

    def __del__(self) -> None:  # the model was dropped: its workers end with it
        try:
            self.close()
        except Exception:  # at interpreter exit Ray may already be torn down
            pass


def _nbytes(segment: dict) -> int:
    total = 0
    for v in segment.values():
        if isinstance(v, (np.ndarray, torch.Tensor)):
            total += v.nbytes
        elif isinstance(v, list):
            total += sum(x[2].nbytes for x in v if len(x) == 3 and isinstance(x[2], np.ndarray)) + 24 * len(v)
    return total
