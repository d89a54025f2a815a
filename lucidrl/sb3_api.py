"""Stable-Baselines3's constructor idioms, read into lucidrl's config (docs/sb3.md has the whole table).

* ``ALGO(policy, env, ...)`` with ``policy`` one of :data:`POLICIES`, as well as lucidrl's ``ALGO(env, ...)``;
* ``policy_kwargs`` with SB3's keys, each mapped onto a config field (:func:`policy_kwargs_to_config`);
* the policy checked against the observation space once the env is known (:func:`check_policy`);
* ``save(path, exclude=[...], include=[...])`` read against lucidrl's fixed checkpoint (:func:`save_selection`).

Nothing here imports Stable-Baselines3.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from torch import nn

from lucidrl.errors import ConfigError

POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
POLICY_KWARGS = ("net_arch", "activation_fn", "ortho_init", "log_std_init", "share_features_extractor")
ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu"}


def split_policy_and_env(policy: Any, env: Any) -> tuple[str | None, Any]:
    """``(policy, env)`` from SB3's ``ALGO(policy, env)`` or lucidrl's ``ALGO(env)``."""
    if env is None and not (isinstance(policy, str) and policy in POLICIES):
        return None, policy  # ALGO(env) / ALGO(env=...): no policy named
    if policy is None:
        return None, env
    if isinstance(policy, str) and policy in POLICIES:
        return policy, env
    if isinstance(policy, type):
        raise ConfigError(
            f"policy={policy.__name__}: lucidrl takes a policy by name, one of {', '.join(POLICIES)} "
            "(its networks are lucidrl's own, set with policy_kwargs or net_arch=, activation=)"
        )
    raise ConfigError(
        f"the first argument is the policy, one of {', '.join(POLICIES)}, when an env is given second; "
        f"got {policy!r:.80} then {env!r:.80}. Write ALGO('MlpPolicy', env) or ALGO(env)"
    )


SB3_POSITIONAL = {  # what SB3's (sb3-contrib's for TRPO) constructors take after (policy, env), in their order
    "ppo": (
        "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range", "clip_range_vf",
        "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "use_sde", "sde_sample_freq",
        "rollout_buffer_class", "rollout_buffer_kwargs", "target_kl", "stats_window_size",
    ),
    "a2c": (
        "learning_rate", "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "rms_prop_eps",
        "use_rms_prop", "use_sde", "sde_sample_freq", "rollout_buffer_class", "rollout_buffer_kwargs",
        "normalize_advantage", "stats_window_size",
    ),
    "dqn": (
        "learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
        "gradient_steps", "replay_buffer_class", "replay_buffer_kwargs", "optimize_memory_usage", "n_steps",
        "target_update_interval", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
        "max_grad_norm", "stats_window_size",
    ),
    "trpo": (
        "learning_rate", "n_steps", "batch_size", "gamma", "cg_max_steps", "cg_damping",
        "line_search_shrinking_factor", "line_search_max_iter", "n_critic_updates", "gae_lambda", "use_sde",
        "sde_sample_freq", "rollout_buffer_class", "rollout_buffer_kwargs", "normalize_advantage", "target_kl",
        "sub_sampling_factor", "stats_window_size",
    ),
}  # fmt: skip
"""The hyperparameters SB3 takes by position (``PPO("MlpPolicy", env, 3e-4, 2048)``), up to ``stats_window_size``;
``tests/contracts/test_sb3_api.py`` checks them against SB3's signatures. (After them come ``tensorboard_log``,
``policy_kwargs``, ``verbose``, ``seed``, ``device``: lucidrl takes those by name.)"""


def positional_hyperparameters(algo: str, policy: str | None, args: tuple, given: dict[str, Any]) -> dict[str, Any]:
    """SB3's ``ALGO("MlpPolicy", env, learning_rate, n_steps, ...)``: the values after the env, by SB3's names (an
    SB3-only name is then refused as any unknown hyperparameter is); a ConfigError for lucidrl's own ``ALGO(env, x)``,
    for more values than SB3 takes by position here, or for one also given by name."""
    names = SB3_POSITIONAL.get(algo)
    if policy is None or names is None:
        raise ConfigError(
            f"{algo.upper()}(env, ...) takes its hyperparameters by name, e.g. learning_rate=3e-4; got "
            f"{len(args)} more positional argument(s) after the env"
        )
    if len(args) > len(names):
        raise ConfigError(
            f"{algo.upper()}: {len(args)} positional hyperparameters after the env, SB3's order has {len(names)} "
            f"({', '.join(names)}); give tensorboard_log, policy_kwargs, verbose, seed and device by name"
        )
    named = dict(zip(names, args))
    twice = sorted(named.keys() & given.keys())
    if twice:
        raise ConfigError(f"{', '.join(twice)} given both by position and by name; give it once")
    return named


def policy_kwargs_to_config(
    algo: str, config_fields: set[str], policy_kwargs: Any, hyperparams: dict[str, Any]
) -> dict[str, Any]:
    """SB3's ``policy_kwargs`` as config fields (``net_arch``, ``activation``, ``ortho_init``, ``log_std_init``);
    ``share_features_extractor`` is returned under its own name for :func:`check_policy`."""
    if policy_kwargs is None:
        return {}
    if not isinstance(policy_kwargs, dict):
        raise ConfigError(f"policy_kwargs must be a dict such as dict(net_arch=[64, 64]), got {policy_kwargs!r:.80}")
    unknown = [k for k in policy_kwargs if k not in POLICY_KWARGS]
    if unknown:
        raise ConfigError(
            f"policy_kwargs: lucidrl does not take {', '.join(map(repr, unknown))}; it accepts "
            f"{', '.join(POLICY_KWARGS)} (see docs/sb3.md for what each becomes)"
        )
    out: dict[str, Any] = {}
    for key, value in policy_kwargs.items():
        if key == "net_arch":
            out["net_arch"] = _net_arch(algo, value)
        elif key == "activation_fn":
            name = ACTIVATIONS.get(value)
            if name is None:
                raise ConfigError(
                    f"policy_kwargs: activation_fn={getattr(value, '__name__', value)!r} is not one "
                    f"lucidrl has; use one of nn.Tanh, nn.ReLU, nn.ELU"
                )
            out["activation"] = name
        elif key in ("ortho_init", "log_std_init"):
            if key not in config_fields:
                raise ConfigError(f"policy_kwargs: {key} does not apply to {algo.upper()} (its config has no {key})")
            out[key] = value
        else:
            out[key] = value
    clash = [k for k in out if k in hyperparams]
    if clash:
        raise ConfigError(f"{', '.join(clash)} given both in policy_kwargs and as a keyword argument; pass it once")
    return out


def _net_arch(algo: str, value: Any) -> list[int]:
    if isinstance(value, dict):
        keys = ("qf",) if algo == "dqn" else ("pi", "vf")
        if set(value) - set(keys) or not value:
            raise ConfigError(
                f"policy_kwargs: net_arch={value!r} for {algo.upper()} takes the keys "
                f"{' and '.join(keys)} (or a list of layer sizes)"
            )
        sizes = [list(value.get(k, [])) for k in keys]  # as SB3: a key left out is a network with no hidden layer
        if any(s != sizes[0] for s in sizes):
            raise ConfigError(
                f"policy_kwargs: net_arch={value!r} gives the actor {sizes[0]} and the critic {sizes[1]} (a key "
                "left out means no hidden layer, as in SB3); lucidrl's actor and critic have the same hidden "
                "layers (one net_arch): give pi and vf the same list"
            )
        return sizes[0]
    if isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value):
        raise ConfigError(
            f"policy_kwargs: net_arch={value!r}: layers shared before a dict (SB3 < 1.8's form) are not "
            "supported; write a list such as [64, 64], or dict(pi=[64, 64], vf=[64, 64])"
        )
    return value  # a list: checked by the config (check_network)


def check_policy(
    algo: str,
    policy: str | None,
    observation_space: gym.Space,
    share_features_extractor: bool | None,
    shares_encoder: bool,
    structured: gym.Space | None = None,
) -> None:
    """Refuse a policy name (and ``share_features_extractor``) that lucidrl's networks cannot honour for this space.

    ``structured``: the env's Dict/Tuple observation space, which ``observation_space`` flattens
    (``lucidrl.envs.structured``); ``MultiInputPolicy`` needs one, and ``MlpPolicy`` takes one too."""
    from lucidrl.networks import is_image_space

    image = is_image_space(observation_space)
    structured_images = bool(getattr(observation_space, "has_images", False))  # a Dict/Tuple with image entries
    if policy == "MultiInputPolicy" and structured is None:
        raise ConfigError(
            f"MultiInputPolicy reads Dict observations; got {observation_space}. Use 'MlpPolicy' (or 'CnnPolicy' "
            "for images)"
        )
    if policy == "CnnPolicy" and structured is not None:
        raise ConfigError(f"CnnPolicy reads one image; the observations are {structured}. Use 'MultiInputPolicy'")
    if policy == "CnnPolicy" and not image:
        raise ConfigError(f"CnnPolicy needs image observations (a 3-D Box); got {observation_space}. Use 'MlpPolicy'")
    if policy == "MlpPolicy" and structured_images:
        raise ConfigError(
            f"MlpPolicy on observations with image entries ({structured}): lucidrl reads images with the Nature CNN "
            "only (SB3 refuses MlpPolicy on a Dict). Use 'MultiInputPolicy'"
        )
    if policy == "MlpPolicy" and image:
        raise ConfigError(
            f"MlpPolicy on image observations {observation_space}: lucidrl reads images with the Nature CNN only "
            "(SB3's MlpPolicy would flatten the pixels into an MLP). Use 'CnnPolicy', or flatten the images with "
            "gymnasium.wrappers.FlattenObservation"
        )
    cnn = image or structured_images
    if share_features_extractor is not None and cnn and bool(share_features_extractor) != shares_encoder:
        raise ConfigError(
            f"policy_kwargs: share_features_extractor={share_features_extractor} is not what {algo.upper()} does in "
            f"lucidrl (its actor and critic {'share' if shares_encoder else 'have separate'} CNNs); leave it out"
        )


SAVED_UNDER_SB3_NAMES = ("policy", "policy_kwargs", "lr_schedule", "exploration_schedule", "_n_updates")
"""SB3's attribute names for what a lucidrl checkpoint holds under its own names (the networks, the network and
schedule settings in config.json, the update counter): ``save(include=...)`` takes them, ``exclude=`` refuses them."""


def save_selection(
    algo: str, holds: str, saved_names: set[str], has_replay: bool, exclude: Any, include: Any
) -> bool | None:
    """SB3's ``model.save(path, exclude=[...], include=[...])`` over lucidrl's checkpoint, which holds fixed content
    (``holds`` says what; ``saved_names`` are the attributes it covers). Returns whether this save puts DQN's replay
    memory in (``"replay_buffer"`` included: True, excluded: False), or None (as the config's ``save_replay_buffer``
    says). Excluding what lucidrl never saves changes nothing; a ConfigError for excluding what every checkpoint
    holds, or including what none can (an env object, a user's attribute)."""
    lists: list[list[str]] = []
    for arg, value in (("exclude", exclude), ("include", include)):
        if value is None:
            lists.append([])
            continue
        try:  # a list (any iterable) of names; a lone string is not one
            names = None if isinstance(value, (str, bytes)) else list(value)
        except TypeError:
            names = None
        if names is None or not all(isinstance(v, str) for v in names):
            raise ConfigError(
                f"save: {arg} takes a list of attribute names, e.g. {arg}=['replay_buffer'], got {value!r:.80}"
            )
        lists.append(names)
    excluded, included = lists
    both = sorted(set(excluded) & set(included))
    if both:
        raise ConfigError(f"save: {', '.join(map(repr, both))} both excluded and included; give each name once")
    replay: bool | None = None
    for name in excluded:
        if name == "replay_buffer":
            replay = False
        elif name in saved_names:
            raise ConfigError(
                f"save(exclude=[{name!r}]): {holds}. {name!r} is part of every {algo.upper()} checkpoint and cannot "
                "be left out (load needs it)"
            )  # any other name: lucidrl does not save it, so it is left out already
    for name in included:
        if name == "replay_buffer":
            if not has_replay:
                raise ConfigError(f"save(include=['replay_buffer']): {algo.upper()} has no replay memory (DQN has one)")
            replay = True
        elif name not in saved_names:
            why = (
                "an env object cannot be saved; its id and arguments are, and load(path, env=...) takes another"
                if name == "env"
                else "lucidrl saves no other attributes: keep what else you need beside the checkpoint"
            )
            raise ConfigError(f"save(include=[{name!r}]): {holds}. It cannot hold {name!r}: {why}")
    return replay
