"""Callbacks of ``learn``: lucidrl's plain ``callback(model, metrics)`` and Stable-Baselines3's classes.

Two forms, mixed freely (a list is a :class:`CallbackList`):

* a function ``callback(model, metrics)``, called after every update with the model and that
  update's metrics (``loss/policy``, ``diag/approx_kl``, ...); returning ``False`` stops training,
  anything else (``None``, ``True``) continues::

      def stop_at(model, metrics):
          return model.num_timesteps < 50_000   # False once 50k steps are done: stop

* a :class:`BaseCallback` subclass, with SB3's names, arguments and hook order::

      init_callback(model)          # learn() starts: _init_callback
      on_training_start             # _on_training_start; self.locals = learn()'s arguments
      repeat:
          on_rollout_start          # before collecting (PPO/A2C/TRPO/VPG: n_steps steps; DQN: train_freq)
          on_step  (every call of the vector env's step; n_calls += 1; False stops training at once)
          on_rollout_end            # after collecting, before the update
          (the update; then the plain callbacks with its metrics)
      on_training_end               # also after a stop

  ``self.model``, ``self.num_timesteps`` (the model's, counted per env step inside a rollout as SB3 does),
  ``self.n_calls``, ``self.training_env`` (the model's gymnasium ``VectorEnv``), ``self.logger``
  (``record``/``record_mean`` go into the next row of metrics.csv / TensorBoard; text, histograms, figures,
  images, videos and hyperparameters to TensorBoard: ``lucidrl.log_media``), ``self.locals``
  (in ``_on_step``: ``actions``, ``new_obs``, ``rewards``, ``dones``, ``infos`` with SB3's ``episode``,
  ``terminal_observation`` and ``TimeLimit.truncated`` keys; ``self`` is the model) and ``self.globals``.
  The step hook runs only when a BaseCallback is given: without one, collection costs nothing more.

``CheckpointCallback``, ``EvalCallback``, ``StopTrainingOnRewardThreshold``, ``StopTrainingOnMaxEpisodes``,
``StopTrainingOnNoModelImprovement``, ``EveryNTimesteps``, ``CallbackList``, ``ConvertCallback`` and
``ProgressBarCallback`` take SB3's arguments. The differences are listed in docs/sb3.md. Callback objects
of the ``stable_baselines3`` package itself are refused (they need SB3's model): swap the import.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from lucidrl.errors import ConfigError
from lucidrl.log_media import number as _number

Callback = Callable[[Any, dict], "bool | None"]

_CONTRACT = (
    "lucidrl's learn(callback=...) takes a function callback(model, metrics), called after every "
    "update, that returns False to stop training (None or True continues), or a lucidrl.callbacks."
    "BaseCallback (SB3's hooks), or a list of those"
)
_SB3_HOOKS = ("_on_step", "on_step", "init_callback")


class StopTraining(Exception):
    """Raised by the step hook when a callback's ``on_step`` returned False; ``learn`` ends normally on it."""


def _name(obj: Any) -> str:
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


def check_callback(callback: Any) -> Any:
    """``callback`` when it fits (``None``, a function ``(model, metrics)``, a :class:`BaseCallback`, a list of
    those, which becomes a :class:`CallbackList`); a :class:`~lucidrl.errors.ConfigError` saying what to pass
    otherwise."""
    if callback is None or isinstance(callback, BaseCallback):
        return callback
    if isinstance(callback, bool):
        raise ConfigError(
            f"{_CONTRACT}; got {callback!r}: learn's second argument is callback (SB3's order); "
            "pass progress_bar=True by keyword"
        )
    if isinstance(callback, (list, tuple)):
        return CallbackList([check_callback(cb) for cb in callback])
    if any(hasattr(callback, hook) for hook in _SB3_HOOKS):
        module = type(callback).__module__ or ""
        hint = (
            f"swap the import: from lucidrl.callbacks import {_name(callback)}"
            if module.startswith("stable_baselines3") or module.startswith("sb3_contrib")
            else "subclass lucidrl.callbacks.BaseCallback (SB3's hooks and names)"
        )
        raise ConfigError(
            f"{_CONTRACT}; got {_name(callback)}, a Stable-Baselines3-style callback object from {module!r} "
            f"(it has {', '.join(h for h in _SB3_HOOKS if hasattr(callback, h))}), which needs SB3's own model: "
            f"{hint}. Or write the check as a function, e.g. def callback(model, metrics): return "
            "model.num_timesteps < 50_000"
        )
    if not callable(callback):
        raise ConfigError(f"{_CONTRACT}; got {_name(callback)} {callback!r:.80}, which is not callable")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):  # a builtin or extension callable without a signature: trust it
        return callback
    names = [p.name for p in signature.parameters.values()]
    if len(names) == 2 and "locals" in names[0] and "globals" in names[1]:
        return LocalsCallback(callback)  # SB3's function form, callback(locals_, globals_): at every env step
    try:
        signature.bind(object(), {})
    except TypeError:
        raise ConfigError(
            f"{_CONTRACT}; {getattr(callback, '__qualname__', _name(callback))}{signature} cannot be "
            "called with the two arguments (model, metrics)"
        ) from None
    return callback


# --------------------------------------------------------------------------- SB3's classes
class BaseCallback:
    """SB3's ``BaseCallback``: override ``_on_step`` (return False to stop) and any of the other hooks."""

    def __init__(self, verbose: int = 0):
        self.model: Any = None  # the lucidrl Algorithm, set by init_callback
        self.n_calls = 0  # calls of on_step (one per vector-env step)
        self.num_timesteps = 0
        self.verbose = verbose
        self.locals: dict[str, Any] = {}
        self.globals: dict[str, Any] = {}
        self.parent: Any = None  # the callback this one runs under (EvalCallback for StopTrainingOnRewardThreshold)

    @property
    def training_env(self):
        return self.model.get_env()

    @property
    def logger(self):
        return self.model.logger

    def init_callback(self, model) -> None:
        self.model = model
        self._init_callback()

    def _init_callback(self) -> None:
        pass

    def on_training_start(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        self.locals, self.globals = locals_, globals_
        self.num_timesteps = self.model.num_timesteps
        self._on_training_start()

    def _on_training_start(self) -> None:
        pass

    def on_rollout_start(self) -> None:
        self._on_rollout_start()

    def _on_rollout_start(self) -> None:
        pass

    def _on_step(self) -> bool:
        return True

    def on_step(self) -> bool:
        self.n_calls += 1
        self.num_timesteps = self.model.num_timesteps
        return self._on_step()

    def on_training_end(self) -> None:
        self._on_training_end()

    def _on_training_end(self) -> None:
        pass

    def on_rollout_end(self) -> None:
        self._on_rollout_end()

    def _on_rollout_end(self) -> None:
        pass

    def update_locals(self, locals_: dict[str, Any]) -> None:
        self.locals.update(locals_)
        self.update_child_locals(locals_)

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        pass


class EventCallback(BaseCallback):
    """A callback that triggers a child callback (``callback``) on an event."""

    def __init__(self, callback: BaseCallback | None = None, verbose: int = 0):
        super().__init__(verbose=verbose)
        self.callback = callback
        if callback is not None:
            callback.parent = self

    def init_callback(self, model) -> None:
        super().init_callback(model)
        if self.callback is not None:
            self.callback.init_callback(self.model)

    def _on_training_start(self) -> None:
        if self.callback is not None:
            self.callback.on_training_start(self.locals, self.globals)

    def _on_event(self) -> bool:
        return self.callback.on_step() if self.callback is not None else True

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback.update_locals(locals_)


class LocalsCallback(BaseCallback):
    """SB3's function callback ``callback(locals_, globals_)`` (what SB3's ``ConvertCallback`` wraps): called at
    every env step with ``self.locals`` and ``self.globals`` (SB3's names: ``self`` is the model, ``infos``,
    ``dones``, ...); as in SB3, training goes on only while it returns a true value. ``learn`` recognises the
    form by its two parameters' names (``locals`` and ``globals`` in them, as SB3's examples write them)."""

    def __init__(self, callback: Callable[[dict, dict], Any], verbose: int = 0):
        super().__init__(verbose)
        self.callback = callback

    def _on_step(self) -> bool:
        return bool(self.callback(self.locals, self.globals))


class CallbackList(BaseCallback):
    """Several callbacks, called in order; training stops when any ``on_step`` returns False."""

    def __init__(self, callbacks: list):
        super().__init__()
        self.callbacks = [
            cb if isinstance(cb, BaseCallback) else ConvertCallback(cb) for cb in callbacks if cb is not None
        ]  # ConvertCallback checks a function's signature

    def _init_callback(self) -> None:
        for cb in self.callbacks:
            cb.init_callback(self.model)

    def _on_training_start(self) -> None:
        for cb in self.callbacks:
            cb.on_training_start(self.locals, self.globals)

    def _on_rollout_start(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_start()

    def _on_step(self) -> bool:
        go = True
        for cb in self.callbacks:
            go = cb.on_step() and go  # every callback is called, as SB3
        return go

    def _on_rollout_end(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_end()

    def _on_training_end(self) -> None:
        for cb in self.callbacks:
            cb.on_training_end()

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.update_locals(locals_)


class ConvertCallback(BaseCallback):
    """A lucidrl function ``callback(model, metrics)`` inside a list: called after each update (not per step)."""

    def __init__(self, callback: Callback, verbose: int = 0):
        super().__init__(verbose)
        self.callback = check_callback(callback)

    def after_update(self, metrics: dict) -> bool:
        return self.callback(self.model, metrics) is not False


class CheckpointCallback(BaseCallback):
    """Save the model every ``save_freq`` calls of ``on_step`` (vector-env steps) to
    ``save_path/{name_prefix}_{num_timesteps}_steps.zip`` (lucidrl's safe checkpoint, zipped).

    ``save_replay_buffer``: DQN's replay memory goes inside the checkpoint (``save_replay_buffer``);
    ``save_vecnormalize``: the normalisers are always in the checkpoint, nothing else to save."""

    def __init__(
        self,
        save_freq: int,
        save_path: str,
        name_prefix: str = "rl_model",
        save_replay_buffer: bool = False,
        save_vecnormalize: bool = False,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if not isinstance(save_freq, int) or save_freq < 1:
            raise ConfigError(f"CheckpointCallback: save_freq must be an integer >= 1 (env steps), got {save_freq!r}")
        self.save_freq, self.save_path, self.name_prefix = save_freq, save_path, name_prefix
        self.save_replay_buffer, self.save_vecnormalize = save_replay_buffer, save_vecnormalize

    def _init_callback(self) -> None:
        os.makedirs(self.save_path, exist_ok=True)

    def _checkpoint_path(self, checkpoint_type: str = "", extension: str = "zip") -> str:
        return os.path.join(
            self.save_path, f"{self.name_prefix}_{checkpoint_type}{self.num_timesteps}_steps.{extension}"
        )

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = self._checkpoint_path()
            cfg = self.model.config
            keep = getattr(cfg, "save_replay_buffer", None)
            if self.save_replay_buffer and keep is not None:
                cfg.save_replay_buffer = True
            try:
                self.model.save(path)
            finally:
                if keep is not None:
                    cfg.save_replay_buffer = keep
            if self.verbose >= 2:
                print(f"Saving model checkpoint to {path}")
        return True


class EvalCallback(EventCallback):
    """Evaluate every ``eval_freq`` calls of ``on_step`` with :func:`lucidrl.evaluation.evaluate_policy`; keep the
    best model in ``best_model_save_path/best_model.zip`` and the results in ``log_path/evaluations.npz``
    (``timesteps``, ``results``, ``ep_lengths``, as SB3). ``callback_on_new_best`` runs on a new best mean,
    ``callback_after_eval`` after every evaluation; either returning False stops training."""

    def __init__(
        self,
        eval_env,
        callback_on_new_best: BaseCallback | None = None,
        callback_after_eval: BaseCallback | None = None,
        n_eval_episodes: int = 5,
        eval_freq: int = 10000,
        log_path: str | None = None,
        best_model_save_path: str | None = None,
        deterministic: bool = True,
        render: bool = False,
        verbose: int = 1,
        warn: bool = True,
    ):
        super().__init__(callback_after_eval, verbose=verbose)
        self.callback_on_new_best = callback_on_new_best
        if callback_on_new_best is not None:
            callback_on_new_best.parent = self
        self.eval_env, self.n_eval_episodes, self.eval_freq = eval_env, n_eval_episodes, eval_freq
        self.deterministic, self.render, self.warn = deterministic, render, warn
        self.best_mean_reward, self.last_mean_reward = -np.inf, -np.inf
        self.best_model_save_path = best_model_save_path
        self.log_path = os.path.join(log_path, "evaluations") if log_path is not None else None
        self.evaluations_results: list[list[float]] = []
        self.evaluations_timesteps: list[int] = []
        self.evaluations_length: list[list[int]] = []

    def _init_callback(self) -> None:
        for path in (self.best_model_save_path, self.log_path and os.path.dirname(self.log_path)):
            if path:
                os.makedirs(path, exist_ok=True)
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.init_callback(self.model)

    def _on_step(self) -> bool:
        go = True
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            from lucidrl.evaluation import evaluate_policy

            rewards, lengths = evaluate_policy(
                self.model,
                self.eval_env,
                n_eval_episodes=self.n_eval_episodes,
                deterministic=self.deterministic,
                render=self.render,
                return_episode_rewards=True,
                warn=self.warn,
            )
            self.evaluations_timesteps.append(self.num_timesteps)
            self.evaluations_results.append(rewards)
            self.evaluations_length.append(lengths)
            if self.log_path is not None:
                np.savez(
                    self.log_path,
                    timesteps=self.evaluations_timesteps,
                    results=self.evaluations_results,
                    ep_lengths=self.evaluations_length,
                )
            mean_reward, std_reward = float(np.mean(rewards)), float(np.std(rewards))
            self.last_mean_reward = mean_reward
            if self.verbose >= 1:
                print(f"Eval num_timesteps={self.num_timesteps}, episode_reward={mean_reward:.2f} +/- {std_reward:.2f}")
                print(f"Episode length: {np.mean(lengths):.2f} +/- {np.std(lengths):.2f}")
            self.logger.record("eval/mean_reward", mean_reward)
            self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
            if mean_reward > self.best_mean_reward:
                if self.verbose >= 1:
                    print("New best mean reward!")
                if self.best_model_save_path is not None:
                    self.model.save(os.path.join(self.best_model_save_path, "best_model.zip"))
                self.best_mean_reward = mean_reward
                if self.callback_on_new_best is not None:
                    go = self.callback_on_new_best.on_step()
            if self.callback is not None:
                go = go and self._on_event()
        return go

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        if self.callback:
            self.callback.update_locals(locals_)


class StopTrainingOnRewardThreshold(BaseCallback):
    """In ``EvalCallback(callback_on_new_best=...)``: stop once the best mean reward reaches ``reward_threshold``."""

    def __init__(self, reward_threshold: float, verbose: int = 0):
        super().__init__(verbose=verbose)
        self.reward_threshold = reward_threshold

    def _on_step(self) -> bool:
        if self.parent is None:
            raise ConfigError(
                "StopTrainingOnRewardThreshold must be used with an EvalCallback "
                "(EvalCallback(eval_env, callback_on_new_best=StopTrainingOnRewardThreshold(...)))"
            )
        go = bool(self.parent.best_mean_reward < self.reward_threshold)
        if self.verbose >= 1 and not go:
            print(
                f"Stopping training because the mean reward {self.parent.best_mean_reward:.2f} "
                f"is above the threshold {self.reward_threshold}"
            )
        return go


class StopTrainingOnNoModelImprovement(BaseCallback):
    """In ``EvalCallback(callback_after_eval=...)``: stop after more than ``max_no_improvement_evals`` evaluations
    in a row without a new best (counting starts after ``min_evals`` evaluations)."""

    def __init__(self, max_no_improvement_evals: int, min_evals: int = 0, verbose: int = 0):
        super().__init__(verbose=verbose)
        self.max_no_improvement_evals, self.min_evals = max_no_improvement_evals, min_evals
        self.last_best_mean_reward = -np.inf
        self.no_improvement_evals = 0

    def _on_step(self) -> bool:
        if self.parent is None:
            raise ConfigError(
                "StopTrainingOnNoModelImprovement must be used with an EvalCallback "
                "(EvalCallback(eval_env, callback_after_eval=StopTrainingOnNoModelImprovement(...)))"
            )
        go = True
        if self.n_calls > self.min_evals:
            if self.parent.best_mean_reward > self.last_best_mean_reward:
                self.no_improvement_evals = 0
            else:
                self.no_improvement_evals += 1
                go = self.no_improvement_evals <= self.max_no_improvement_evals
        self.last_best_mean_reward = self.parent.best_mean_reward
        if self.verbose >= 1 and not go:
            print(f"Stopping training: no new best model in the last {self.no_improvement_evals} evaluations")
        return go


class StopTrainingOnMaxEpisodes(BaseCallback):
    """Stop once ``max_episodes`` episodes have ended in each env copy on average (SB3: per env times n_envs)."""

    def __init__(self, max_episodes: int, verbose: int = 0):
        super().__init__(verbose=verbose)
        self.max_episodes, self.n_episodes = max_episodes, 0

    def _init_callback(self) -> None:
        self._total_max_episodes = self.max_episodes * self.training_env.num_envs

    def _on_step(self) -> bool:
        self.n_episodes += int(np.sum(self.locals["dones"]).item())
        go = self.n_episodes < self._total_max_episodes
        if not go and self.verbose >= 1:
            n_envs = self.training_env.num_envs
            per_env = f" ({self.n_episodes / n_envs:.2f} per env on average)" if n_envs > 1 else ""
            print(
                f"Stopping training at step {self.num_timesteps}: {self.n_episodes} episodes ended{per_env}, "
                f"max_episodes={self.max_episodes} per env"
            )
        return go


class EveryNTimesteps(EventCallback):
    """Trigger ``callback`` every ``n_steps`` env steps (counted over all envs)."""

    def __init__(self, n_steps: int, callback: BaseCallback):
        super().__init__(callback)
        self.n_steps, self.last_time_trigger = n_steps, 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last_time_trigger >= self.n_steps:
            self.last_time_trigger = self.num_timesteps
            return self._on_event()
        return True


class ProgressBarCallback(BaseCallback):
    """Shows lucidrl's progress bar (as ``learn(progress_bar=True)``; the bar is lucidrl's own, drawn per update)."""


# --------------------------------------------------------------------------- what learn calls
def _walk(callback: BaseCallback):
    yield callback
    for child in getattr(callback, "callbacks", ()):
        yield from _walk(child)


class Hooks:
    """What ``learn`` calls at each point of SB3's hook order (``Algorithm._learning``, ``_collect_with_hooks``,
    ``_after_update``); the model's ``num_timesteps`` moves per env step inside a rollout, as in SB3."""

    def __init__(self, model, callback: Any):
        self.model = model
        self.root = callback if isinstance(callback, BaseCallback) else None
        self.function = callback if self.root is None else None
        # BaseCallbacks with SB3's step hook (a lone plain function needs no per-step call)
        self.per_step = self.root is not None and not (
            isinstance(self.root, CallbackList) and all(isinstance(c, ConvertCallback) for c in self.root.callbacks)
        )
        self.converted = [c for c in _walk(self.root) if isinstance(c, ConvertCallback)] if self.root else []
        self.progress_bar = self.root is not None and any(isinstance(c, ProgressBarCallback) for c in _walk(self.root))
        self._base = 0

    def training_start(self, locals_: dict[str, Any]) -> None:
        if self.root is not None:
            self.root.init_callback(self.model)
            self.root.on_training_start(locals_, {})

    def rollout_start(self, stepper) -> None:
        if self.root is None:
            return
        self._base = self.model.num_timesteps
        if self.per_step:
            if stepper is None:
                raise ConfigError(
                    "SB3-style callbacks are called at every env step, which this collector (rollout "
                    "workers on Ray) does not do; use rollout_workers=0, or a function callback(model, "
                    "metrics) called after each update"
                )
            stepper.on_step = self.step
            self._calls = 0
        self.root.on_rollout_start()

    def step(self, actions: np.ndarray, tr, info: dict) -> None:
        """One vector-env step (``rollout.VectorStepper.on_step``): SB3's ``on_step`` with its ``locals``."""
        model, n, root = self.model, len(tr.reward), self.root
        assert root is not None  # (step is installed only for per-step callbacks, which have a root)
        self._calls += 1
        dones = tr.terminated | tr.truncated
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        if dones.any():
            for i in np.flatnonzero(dones).tolist():
                infos[i]["TimeLimit.truncated"] = bool(tr.truncated[i] and not tr.terminated[i])
                # SAME_STEP envs give the final observation apart; a NEXT_STEP env returns it as the observation
                infos[i]["terminal_observation"] = tr.final_obs[i] if i in tr.final_obs else tr.obs[i]
            for i, r, length in zip(tr.episode_rows, tr.episode_returns, tr.episode_lengths):  # (not lost lives)
                infos[i]["episode"] = {"r": r, "l": length}
        root.update_locals(
            {
                "self": model,
                "actions": actions,
                "new_obs": tr.obs,
                "rewards": tr.reward,
                "dones": dones,
                "infos": infos,
                "n_steps": self._calls,
            }
        )
        before = model.num_timesteps
        model.num_timesteps = self._base + self._calls * n  # SB3 counts per step; the algorithm adds the rollout
        if not root.on_step():
            raise StopTraining  # num_timesteps stays at the steps taken, as SB3
        model.num_timesteps = before

    def rollout_end(self, stepper) -> None:
        if self.root is None:
            return
        if stepper is not None:
            stepper.on_step = None
        self.root.on_rollout_end()

    def after_update(self, metrics: dict) -> bool:
        """The plain callbacks with the update's metrics; True means stop."""
        stop = self.function is not None and self.function(self.model, metrics) is False
        for c in self.converted:
            stop = (not c.after_update(metrics)) or stop
        return stop

    def training_end(self) -> None:
        if self.root is not None:
            self.root.on_training_end()


class SB3Logger:
    """``model.logger``: SB3's ``record`` / ``record_mean`` / ``dump`` / ``output_formats`` / ``info``.

    Recorded numbers join the next row that lucidrl logs (metrics.csv, TensorBoard), one per update; text,
    arrays (histograms) and ``lucidrl.log_media``'s Figure, Image, Video and HParam (or SB3's) go to the run's
    TensorBoard events at that row's step. ``exclude`` takes SB3's format names: ``"csv"`` keeps a number out of
    metrics.csv, ``"tensorboard"`` out of TensorBoard, ``"stdout"`` out of the verbose=2 table. ``dump`` does
    nothing: lucidrl writes a row per update."""

    def __init__(self):
        self.name_to_value: dict[str, Any] = {}
        self.name_to_excluded: dict[str, tuple[str, ...]] = {}
        self._means: dict[str, list[float]] = {}
        self.dir: str | None = None
        self._writer: Any = None  # the run's SummaryWriter during learn (attach), for output_formats
        self._left_out: set[str] = set()  # keys already reported as left out
        self._notes: list[str] = []
        self._console: Callable[[str], None] = print
        self.verbose = 1  # the model's (set by model.logger): outside learn, info prints at verbose >= 1

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        before = self.name_to_value.get(key)
        if before is not None and before is not value:  # replaced before its row: a figure to close is closed
            from lucidrl.log_media import discard

            discard(before)
        self.name_to_value[key] = value
        self._exclude(key, exclude)

    def record_mean(self, key: str, value: Any, exclude: Any = None) -> None:
        number = _number(value)
        if number is None:
            self._left_out_note(key, value, "record_mean averages numbers")
        else:
            self._means.setdefault(key, []).append(number)
            self._exclude(key, exclude)

    def _exclude(self, key: str, exclude: Any) -> None:
        formats = (exclude,) if isinstance(exclude, str) else tuple(exclude or ())
        if formats:
            self.name_to_excluded[key] = formats
        else:
            self.name_to_excluded.pop(key, None)

    def dump(self, step: int = 0) -> None:
        pass

    def get_log_dir(self) -> str | None:
        return self.dir

    @property
    def output_formats(self) -> list[Any]:
        """During ``learn`` with TensorBoard events: ``[TensorBoardOutputFormat]`` (``.writer``: the run's
        SummaryWriter; ``lucidrl.log_media``); otherwise ``[]``. metrics.csv is lucidrl's own and not listed."""
        from lucidrl.log_media import output_format

        return [output_format(self._writer)] if self._writer is not None else []

    def attach(self, writer: Any, console: Callable[[str], None]) -> None:
        """For one ``learn``: the run's SummaryWriter (None without TensorBoard) and its console (``info``)."""
        self._writer, self._console = writer, console

    def detach(self) -> None:
        self._writer, self._console = None, print

    def log(self, *args: Any, level: int = 20) -> None:
        """SB3's ``logger.log``: a line on the console as lucidrl's own notes (above the progress bar; nothing at
        ``verbose=0``), for ``level`` at or above SB3's default INFO (20); ``debug`` (10) prints nothing, as in SB3."""
        if level < 20 or (self._console is print and self.verbose < 1):
            return
        self._console(" ".join(map(str, args)))

    def info(self, *args: Any) -> None:
        self.log(*args, level=20)

    def debug(self, *args: Any) -> None:
        self.log(*args, level=10)

    def warn(self, *args: Any) -> None:
        self.log("warning:", *args, level=30)

    def error(self, *args: Any) -> None:
        self.log("error:", *args, level=40)

    def pop(self) -> dict[str, Any]:
        """The numbers recorded since the last row, and forget them: Python and NumPy numbers, one-element arrays
        and tensors (``record_mean``'s as their mean). The other values wait in ``media`` for ``write_media``."""
        out: dict[str, Any] = {}
        self.media: dict[str, Any] = {}
        for k, v in self.name_to_value.items():
            number = _number(v)
            if number is None:
                self.media[k] = v
            else:
                out[k] = number
        out.update({k: float(np.mean(v)) for k, v in self._means.items()})
        self.excluded = self.name_to_excluded
        self.name_to_value, self._means, self.name_to_excluded = {}, {}, {}
        return out

    def write_media(self, step: int) -> None:
        """Write what ``pop`` set aside to the run's TensorBoard events at ``step`` (``lucidrl.log_media``); what
        TensorBoard cannot show, or a run without TensorBoard events, is left out and said once per key."""
        from lucidrl.log_media import discard, tensorboard_value, write

        for key, value in getattr(self, "media", {}).items():
            try:
                found = tensorboard_value(value)  # (SB3's Figure, ... are checked as lucidrl's)
            except ConfigError as e:
                raise ConfigError(f"model.logger.record({key!r}, ...): {e}") from None
            if found is None:
                self._left_out_note(key, value, "TensorBoard shows numbers, text, arrays and lucidrl.log_media's kinds")
            elif "tensorboard" in self.excluded.get(key, ()):
                discard(value)
            elif self._writer is None:
                discard(value)
                self._left_out_note(
                    key,
                    value,
                    f"a {found[0]} goes to TensorBoard and this run writes no TensorBoard events "
                    "(give run_dir= or tensorboard_log=, with tensorboard=True)",
                )
            else:
                try:
                    write(self._writer, key, *found, step)
                except Exception as e:  # a value the checks let through and TensorBoard refused
                    raise ConfigError(
                        f"model.logger.record({key!r}, ...): TensorBoard could not write this {found[0]}: {e}"
                    ) from None
        self.media = {}

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def _left_out_note(self, key: str, value: Any, why: str) -> None:
        if key not in self._left_out:
            self._left_out.add(key)
            self._notes.append(f"model.logger.record({key!r}, ...): a {type(value).__name__} is left out: {why}")
