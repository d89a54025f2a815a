"""Bring a trained Stable-Baselines3 (or sb3-contrib) model into lucidrl, without unpickling anything.

An SB3 ``.zip`` holds:

* ``data``: JSON. Plain entries (``gamma``, ``n_steps``, ``learning_rate`` when it was a float, ...) are
  read as they are. Entries that were Python objects (spaces, schedules, ``policy_kwargs`` with a class in
  it) are stored as ``{":type:": ..., ":serialized:": <base64 pickle>, <readable attributes>}``: we read
  the readable attributes (a Box's ``_shape``, ``dtype``, ``low`` and ``high`` as printed arrays, a
  Discrete's ``n``, a schedule's ``ConstantSchedule(val=...)``) and **never decode** ``:serialized:``.
* ``policy.pth``: the policy's ``state_dict``, read with ``torch.load(weights_only=True)``: tensors only
  (torch's restricted loader refuses any other object).
* ``policy.optimizer.pth``, ``pytorch_variables.pth``: optimiser state and extra tensors; not carried over
  (the optimiser's moments do not fit lucidrl's parameter order; the report says so).
* ``_stable_baselines3_version``, ``system_info.txt``: text.

Supported: PPO, A2C, DQN (SB3) and TRPO (sb3-contrib) with ``MlpPolicy`` (any ``net_arch`` with the same
layers for π and V, Tanh/ReLU/ELU) or ``CnnPolicy`` (SB3's NatureCNN is lucidrl's
:class:`lucidrl.networks.NatureCNN` layer for layer), Discrete, MultiDiscrete, MultiBinary or 1-D Box actions,
Box, Discrete, MultiDiscrete or MultiBinary observations, and ``MultiInputPolicy`` on Dict observations of those
and images (SB3 prints a Dict's entries as text only, so such a model needs ``env=``). The parameter names map
as follows (L = number of hidden layers; for a Dict, each image entry ``key``, the k-th image in key order)::

    SB3 (actor-critic)                        lucidrl ActorCritic
    mlp_extractor.policy_net.{2i}.*           actor.{2i}.*
    action_net.*                              actor.{2L}.*
    log_std                                   actor.{2L+1}.log_std          (Box actions)
    mlp_extractor.value_net.{2i}.*            critic.{2i}.*
    value_net.*                               critic.{2L}.*
    (pi_)features_extractor.cnn.{0,2,4}.*     encoder.conv.{0,2,4}.*
    (pi_)features_extractor.linear.0.*        encoder.fc.0.*                (critic_encoder: vf_features_extractor)
    features_extractor.extractors.key.cnn.*   encoder.cnns.k.conv.*         (Dict: lucidrl.networks.StructuredEncoder)

    SB3 (DQN)                                 lucidrl DQN
    q_net.q_net.{2i}.*                        q_net.q.{2i}.*
    q_net.features_extractor.cnn/linear.*     q_net.encoder.conv/fc.*       (q_net_target.* alike)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import gymnasium as gym
import numpy as np
import torch

from lucidrl.agent import ALGORITHMS, Algorithm
from lucidrl.checkpoint import is_file_object, read_file_object
from lucidrl.envs import EnvLike, env_id_of, make_env
from lucidrl.envs.structured import flat_space, is_image_entry, is_structured
from lucidrl.errors import CheckpointError, ConfigError

SUPPORTED = ("ppo", "a2c", "dqn", "trpo")
ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu"}
# SB3's attribute name -> lucidrl's config field, per algorithm (same names: SB3's are lucidrl's convention)
_COMMON = ("gamma", "n_envs")
_HYPER = {
    "ppo": _COMMON
    + (
        "n_steps",
        "batch_size",
        "n_epochs",
        "gae_lambda",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
        "normalize_advantage",
        "target_kl",
    ),
    "a2c": _COMMON + ("n_steps", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "normalize_advantage"),
    "trpo": _COMMON
    + (
        "n_steps",
        "batch_size",
        "n_critic_updates",
        "gae_lambda",
        "target_kl",
        "cg_max_steps",
        "cg_damping",
        "line_search_shrinking_factor",
        "line_search_max_iter",
        "normalize_advantage",
        "sub_sampling_factor",
    ),
    "dqn": _COMMON
    + (
        "buffer_size",
        "learning_starts",
        "batch_size",
        "tau",
        "gradient_steps",
        "target_update_interval",
        "exploration_fraction",
        "exploration_initial_eps",
        "exploration_final_eps",
        "max_grad_norm",
    ),
}
_CONSTANT = re.compile(r"^ConstantSchedule\(val=([-+0-9.eE]+|inf|nan)\)$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|nan)$")


# --------------------------------------------------------------------------- reading the zip
def read_sb3_zip(
    path: str | os.PathLike | IO[bytes],
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """``(data, policy state_dict, info)`` of an SB3 zip, a path or a binary file object (read from its position,
    as SB3's ``load`` takes one); nothing is unpickled.

    ``info``: ``sb3_version``, ``members`` (the zip's file names), ``pytorch_variables`` (the tensors of
    ``pytorch_variables.pth``, read like the policy), ``path`` (how messages name it: the file's path, or
    ``<file object>`` for a stream without a name)."""
    source: Path | io.BytesIO
    if is_file_object(path):
        blob = read_file_object(path, "from_sb3")  # a clear error for a text, unreadable or exhausted stream
        name = getattr(path, "name", None)
        p = Path(name) if isinstance(name, str) and name else Path("<file object>")
        source = io.BytesIO(blob.data)
    else:
        p = Path(path)  # type: ignore[arg-type]
        if not p.is_file():
            also = f" (nor {str(p) + '.zip'!r})" if p.suffix.lower() != ".zip" else ""
            if p.suffix.lower() != ".zip" and Path(str(p) + ".zip").is_file():
                p = Path(str(p) + ".zip")
            else:
                raise CheckpointError(f"no SB3 model at {str(p)!r}{also}: the file does not exist")
        source = p
    names: list[str] = []
    raw: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(source) as z:  # read() checks each member's CRC
            names = z.namelist()
            raw = {
                n: z.read(n)
                for n in ("data", "policy.pth", "pytorch_variables.pth", "_stable_baselines3_version")
                if n in names
            }
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
            f"{str(p)!r} is not a readable zip file ({e}); give the .zip written by an SB3 model's save()"
        ) from None
    if "config.json" in names and "weights.safetensors" in names:
        raise CheckpointError(f"{str(p)!r} is already a lucidrl checkpoint; load it with lucidrl.load({str(p)!r})")
    missing = [n for n in ("data", "policy.pth") if n not in names]
    if missing:
        raise CheckpointError(
            f"{str(p)!r} is not a Stable-Baselines3 model, or is a damaged one: the zip lacks {', '.join(missing)} "
            f"(it holds "
            f"{', '.join(sorted(names)[:6]) or 'nothing'}). Give the .zip written by an SB3 model's save()."
        )
    try:
        data = json.loads(raw["data"])
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{str(p)!r}: its 'data' entry is not valid JSON ({e}); the file is damaged or not an SB3 model"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(p)!r}: its 'data' entry should be a JSON object")
    state_dict = _tensors(raw["policy.pth"], p, "policy.pth")
    variables = (
        _tensors(raw["pytorch_variables.pth"], p, "pytorch_variables.pth") if "pytorch_variables.pth" in raw else {}
    )
    version = raw.get("_stable_baselines3_version", b"?").decode(errors="replace").strip()
    return data, state_dict, {"sb3_version": version, "members": names, "pytorch_variables": variables, "path": p}


def _tensors(blob: bytes, path: Path, member: str) -> dict[str, torch.Tensor]:
    """A torch-saved dict of tensors, through torch's restricted loader (``weights_only=True``): tensors and
    plain containers only; any other object is refused, never constructed."""
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for what it refuses
        raise CheckpointError(
            f"{str(path)!r}: {member} is not a plain dict of tensors that can be read without "
            f"unpickling objects ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(f"{str(path)!r}: {member} should hold a dict of named tensors")
    return dict(obj)


# --------------------------------------------------------------------------- what the JSON says
def _readable(entry: Any) -> dict[str, Any]:
    """The readable attributes of a serialised object entry (``:serialized:`` dropped, never decoded)."""
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k != ":serialized:"}
    return {}


def _printed_array(text: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> tuple[np.ndarray, bool]:
    """An array from numpy's printed form (``"[-4.8 -inf 0.41887903 -inf]"``); ``(array, exact)``. A summarised
    print (``...``) whose visible values are all equal is read as that value everywhere (exact=False)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a printed array")
    tokens = [t for t in re.split(r"[\s\[\],]+", text) if t]
    summarised = "..." in tokens
    values = [t for t in tokens if t != "..."]
    if not values or not all(_NUMBER.match(t.lower()) for t in values):
        raise ValueError(f"{what} {text[:60]!r} is not a printed array of numbers")
    numbers = np.array([float(t) for t in values], dtype=np.float64)
    n = math.prod(shape)
    if summarised:
        if not np.all(numbers == numbers[0]):
            raise ValueError(f"{what} was saved summarised ('...'), with different values")
        return np.full(shape, numbers[0]).astype(dtype), False
    if numbers.size == 1 and n != 1:
        return np.full(shape, numbers[0]).astype(dtype), True
    if numbers.size != n:
        raise ValueError(f"{what} has {numbers.size} values for shape {shape}")
    return numbers.reshape(shape).astype(dtype), True


def space_from_sb3(entry: Any, role: str) -> tuple[gym.Space, list[str]]:
    """A Discrete, MultiDiscrete, MultiBinary or Box space from its readable attributes in SB3's ``data``;
    ``(space, notes)``."""
    fields = _readable(entry)
    kind = str(fields.get(":type:", ""))
    if "Discrete" in kind and "Multi" not in kind:
        return gym.spaces.Discrete(int(fields["n"]), start=int(fields.get("start", 0))), []
    if "spaces.multi_discrete.MultiDiscrete" in kind:
        shape = tuple(int(s) for s in fields["_shape"])
        nvec, _ = _printed_array(fields.get("nvec"), shape, np.dtype(np.int64), f"the {role} space's nvec")
        start, _ = _printed_array(fields.get("start", "0"), shape, np.dtype(np.int64), f"the {role} space's start")
        return gym.spaces.MultiDiscrete(nvec, dtype=np.dtype(fields.get("dtype", "int64")), start=start), []
    if "spaces.multi_binary.MultiBinary" in kind:
        n = fields["n"]
        return gym.spaces.MultiBinary(int(n) if isinstance(n, int) else [int(k) for k in n]), []
    if "spaces.box.Box" in kind:
        shape = tuple(int(s) for s in fields["_shape"])
        dtype = np.dtype(fields["dtype"])
        low, exact_low = _printed_array(fields.get("low"), shape, dtype, f"the {role} space's low")
        high, exact_high = _printed_array(fields.get("high"), shape, dtype, f"the {role} space's high")
        notes = (
            []
            if exact_low and exact_high
            else [
                f"the {role} space's bounds were saved summarised; read as low={low.flat[0]}, high={high.flat[0]} "
                "everywhere (pass env= to take them from the env)"
            ]
        )
        return gym.spaces.Box(low, high, shape=shape, dtype=dtype), notes
    if "spaces.dict.Dict" in kind:
        raise ValueError(
            f"the {role} space is a Dict, whose entries SB3 saves printed as text (or pickled); pass env= to take "
            "it from the env"
        )
    raise ValueError(
        f"the {role} space is {kind or 'unknown'}; lucidrl imports Discrete, MultiDiscrete, MultiBinary and Box spaces"
    )


def _constant(entry: Any) -> float | None:
    """The value of a constant SB3 schedule (``FloatSchedule(ConstantSchedule(val=x))``), else None."""
    m = _CONSTANT.match(str(_readable(entry).get("value_schedule", "")))
    return float(m.group(1)) if m else None


def detect_algo(data: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """Which algorithm wrote the zip, from its attributes (SB3 does not store the algorithm's name)."""
    if any(k.startswith("q_net.") for k in state_dict):
        return "dqn"
    if "action_net.weight" not in state_dict or "value_net.weight" not in state_dict:
        raise CheckpointError(
            "the SB3 model is not an actor-critic (PPO, A2C, TRPO) or a DQN policy (its parameters: "
            f"{', '.join(sorted(state_dict)[:6])}...); lucidrl imports {', '.join(SUPPORTED)}"
        )
    if "cg_max_steps" in data:
        return "trpo"
    if "clip_range" in data or "n_epochs" in data:
        return "ppo"
    return "a2c"


# --------------------------------------------------------------------------- weights
def _layers(state_dict: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Indices of the Linear layers ``prefix.{i}.weight`` in order."""
    found = [int(m.group(1)) for k in state_dict if (m := re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", k))]
    return sorted(found)


def _hidden_sizes(state_dict: dict[str, torch.Tensor], prefix: str) -> list[int]:
    indices = _layers(state_dict, prefix)
    if indices != [2 * i for i in range(len(indices))]:
        raise CheckpointError(f"the SB3 network {prefix} is not Linear/activation pairs (layers at {indices})")
    return [int(state_dict[f"{prefix}.{i}.weight"].shape[0]) for i in indices]


def _map_cnn(src: str, dst: str, state_dict: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> bool:
    """SB3 NatureCNN ``src.cnn.{0,2,4}`` / ``src.linear.0`` -> lucidrl NatureCNN ``dst.conv.{0,2,4}`` / ``dst.fc.0``."""
    if f"{src}.cnn.0.weight" not in state_dict:
        return False
    for i in (0, 2, 4):
        for p in ("weight", "bias"):
            out[f"{dst}.conv.{i}.{p}"] = state_dict[f"{src}.cnn.{i}.{p}"]
    for p in ("weight", "bias"):
        out[f"{dst}.fc.0.{p}"] = state_dict[f"{src}.linear.0.{p}"]
    return True


def _check_dict_keys(space: gym.Space, entry: Any) -> None:
    """A ConfigError when the env's Dict does not have the keys, in the same order, of the Dict that SB3 printed
    (``spaces``: "{'img': Box(...), 'mode': Discrete(3)}"): the entries are concatenated in key order, so an env
    with other keys of the same sizes would feed the converted networks the wrong columns without an error."""
    printed = entry.get("spaces") if isinstance(entry, dict) and "Dict" in str(entry.get(":type:")) else None
    if not isinstance(printed, str):
        return
    keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else None
    where = [-1] if keys is None else [printed.find(f"{key!r}: ") for key in keys]
    if min(where, default=0) < 0 or where != sorted(where):
        raise ConfigError(
            f"the env's observations are {space if keys is None else f'a Dict of the keys {keys}'}, the SB3 model "
            f"was trained on a Dict {printed}; give the env the model was trained on (the entries are read in key "
            "order)"
        )


def _cnn_pairs(model: Algorithm) -> list[tuple[str, str]]:
    """(SB3 suffix, lucidrl suffix) of each CNN below a features extractor / encoder: ``("", "")`` for one image;
    for a Dict, ``(".extractors.key", ".cnns.k")`` for its k-th image entry (SB3's CombinedExtractor by key)."""
    structured = model.structured_observation_space
    if structured is None:
        return [("", "")]
    assert isinstance(structured, gym.spaces.Dict)
    keys = [key for key, sub in structured.spaces.items() if is_image_entry(sub)]
    return [(f".extractors.{key}", f".cnns.{k}") for k, key in enumerate(keys)]


def _map_cnns(src: str, dst: str, pairs, state_dict: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> bool:
    """``_map_cnn`` for each CNN of a (possibly Dict) features extractor; True if there was any."""
    found = [_map_cnn(src + theirs, dst + ours, state_dict, out) for theirs, ours in pairs]
    return any(found)


def _actor_critic_weights(
    state_dict: dict[str, torch.Tensor], model: Algorithm, notes: list[str]
) -> dict[str, torch.Tensor]:
    agent = model.agent
    out: dict[str, torch.Tensor] = {}
    n_hidden = len(_layers(state_dict, "mlp_extractor.policy_net"))
    for side, sb3 in (("actor", "policy_net"), ("critic", "value_net")):
        for i in range(n_hidden):
            for p in ("weight", "bias"):
                out[f"{side}.{2 * i}.{p}"] = state_dict[f"mlp_extractor.{sb3}.{2 * i}.{p}"]
    for p in ("weight", "bias"):
        out[f"actor.{2 * n_hidden}.{p}"] = state_dict[f"action_net.{p}"]
        out[f"critic.{2 * n_hidden}.{p}"] = state_dict[f"value_net.{p}"]
    if "log_std" in state_dict:
        out[f"actor.{2 * n_hidden + 1}.log_std"] = state_dict["log_std"]
    pairs = _cnn_pairs(model)
    first = pairs[0][0] if pairs else ""
    separate = f"pi_features_extractor{first}.cnn.0.weight" in state_dict
    pi = "pi_features_extractor" if separate else "features_extractor"
    if _map_cnns(pi, "encoder", pairs, state_dict, out):
        vf = "vf_features_extractor" if separate else pi
        vf_weights: dict[str, torch.Tensor] = {}
        _map_cnns(vf, "encoder", pairs, state_dict, vf_weights)
        shared = all(torch.equal(v, out[k]) for k, v in vf_weights.items())
        if agent.critic_encoder is not None:  # TRPO: the critic has its own CNN; a shared SB3 CNN is copied into it
            out.update({"critic_" + k: v for k, v in vf_weights.items()})
            if shared:
                notes.append(
                    "SB3's shared CNN is copied into the critic's own CNN (lucidrl's TRPO gives the critic "
                    "its own encoder); predictions are unchanged"
                )
        elif not shared:
            raise CheckpointError(
                f"this SB3 model has separate CNNs for π and V (share_features_extractor=False); "
                f"lucidrl's {model.name.upper()} shares one CNN between actor and critic"
            )
    return out


def _dqn_weights(
    state_dict: dict[str, torch.Tensor], n_hidden: int, model: Algorithm
) -> dict[str, dict[str, torch.Tensor]]:
    nets = {}
    for net in ("q_net", "q_net_target"):
        out: dict[str, torch.Tensor] = {}
        for i in range(n_hidden + 1):
            for p in ("weight", "bias"):
                out[f"q.{2 * i}.{p}"] = state_dict[f"{net}.q_net.{2 * i}.{p}"]
        _map_cnns(f"{net}.features_extractor", "encoder", _cnn_pairs(model), state_dict, out)
        nets[net] = out
    return nets


def _used_keys(state_dict: dict[str, torch.Tensor]) -> set[str]:
    """SB3 keys that the mapping reads or that are known duplicates of them (a shared features extractor is
    registered under three names)."""
    dup = re.compile(
        r"^(features_extractor|pi_features_extractor|vf_features_extractor|mlp_extractor|action_net|"
        r"value_net|log_std|q_net|q_net_target)(\.|$)"
    )
    return {k for k in state_dict if dup.match(k)}


# --------------------------------------------------------------------------- the conversion
def from_sb3(
    path: str | os.PathLike | IO[bytes],
    env: EnvLike | None = None,
    algo: str | None = None,
    device: str = "cpu",
    verbose: int = 1,
    **kwargs: Any,
) -> Algorithm:
    """Convert a Stable-Baselines3 / sb3-contrib ``.zip`` (PPO, A2C, DQN, TRPO; MLP or CNN policy) into a
    lucidrl model whose ``predict`` acts as the SB3 model's does. Nothing in the zip is unpickled.

    Args:
        path: the SB3 ``.zip`` (``"x"`` finds ``x.zip``, as SB3's load), or a binary file object holding one
            (``io.BytesIO``, ``open(PATH, "rb")``), read from its position as SB3's load reads it.
        env: an env id or instance: its spaces are used (and it becomes the model's env for ``learn``). SB3 does
            not store the env id, so without ``env`` the model has none: give one to ``evaluate`` or ``set_env``.
        algo: ``"ppo"``, ``"a2c"``, ``"dqn"`` or ``"trpo"``; by default read from the zip (SB3 does not store
            the algorithm's name: DQN by its Q-network, TRPO by ``cg_max_steps``, PPO by ``clip_range``, else A2C).
        device: as for the algorithm's constructor.
        verbose: as for the algorithm's constructor.
        **kwargs: hyperparameters, as for the algorithm's constructor (those given here win).

    Returns the model; ``model.import_report`` lists what was carried over and what was not (optimiser state,
    schedules, VecNormalize statistics, ...), printed when ``verbose``.
    """
    data, state_dict, info = read_sb3_zip(path)
    src = info["path"]
    if algo is None:
        algo = detect_algo(data, state_dict)
    algo = str(algo).lower()
    if algo not in SUPPORTED:
        raise ConfigError(f"algo={algo!r}: lucidrl imports SB3 models of {', '.join(SUPPORTED)}")
    if data.get("use_sde"):
        raise CheckpointError(
            f"{str(src)!r} was trained with gSDE (use_sde=True); lucidrl has no state-dependent "
            "exploration, so its policy cannot be carried over"
        )
    report = [
        f"read {src.name} (Stable-Baselines3 {info['sb3_version']}) as {algo.upper()}; nothing unpickled "
        "(policy.pth through torch.load(weights_only=True), metadata from the JSON 'data', its pickled "
        "entries skipped)"
    ]
    not_carried = ["optimizer state (policy.optimizer.pth): training continues with fresh optimiser moments"]

    # spaces: from env= when given, else from the readable fields of the JSON
    parsed: list[tuple[gym.Space, list[str]] | None] = []
    parse_error = None
    for k in ("observation_space", "action_space"):
        try:
            parsed.append(space_from_sb3(data.get(k), k.split("_")[0]))
        except (ValueError, KeyError, TypeError) as e:
            parsed.append(None)
            parse_error = parse_error or e
    if env is not None:
        probe = make_env(env)
        try:
            spaces: tuple[gym.Space, ...] = (probe.observation_space, probe.action_space)
        finally:
            if not isinstance(env, gym.Env):
                probe.close()
        for got, one in zip(spaces, parsed):
            if one is not None:
                want = one[0]
                wshape = tuple(want.shape or ())
                transposed = len(wshape) == 3 and got.shape == (*wshape[1:], wshape[0])
                if transposed:  # SB3 moved the channels first (VecTransposeImage); lucidrl's CNN takes either
                    report.append(
                        f"the env's images are channels-last {got.shape}; SB3 saved {want.shape} (channels "
                        "first): the model takes the env's, its CNN moves the channels itself"
                    )
                if (
                    type(got) is not type(want)
                    or (got.shape != want.shape and not transposed)
                    or (
                        isinstance(got, gym.spaces.Discrete)
                        and isinstance(want, gym.spaces.Discrete)
                        and got.n != want.n
                    )
                    or (
                        isinstance(got, gym.spaces.MultiDiscrete)
                        and isinstance(want, gym.spaces.MultiDiscrete)
                        and not np.array_equal(got.nvec, want.nvec)
                    )
                ):
                    raise ConfigError(
                        f"env {env_id_of(env)!r} has {got}, the SB3 model was trained on {want}; give "
                        "the env the model was trained on"
                    )
    elif parse_error is not None:
        raise CheckpointError(
            f"{str(src)!r}: cannot read the observation/action spaces from its JSON ({parse_error}); lucidrl never "
            "decodes their pickled form. Pass env= (an env id or instance) to take the spaces from the env."
        )
    else:
        readable = [one for one in parsed if one is not None]
        spaces = (readable[0][0], readable[1][0])
        for _, notes in readable:
            report += notes
    _check_dict_keys(spaces[0], data.get("observation_space"))
    if is_structured(spaces[0]):  # MultiInputPolicy: the model reads the flattened rows of the env's Dict
        spaces = (flat_space(spaces[0]), spaces[1], spaces[0])

    # hyperparameters that are plain JSON, and constant schedules read from their readable form
    hyper: dict[str, Any] = {}
    for key in _HYPER[algo]:
        value = data.get(key)
        if isinstance(value, (int, float, bool)) or (key == "target_kl" and value is None and algo == "ppo"):
            hyper[key] = value
    lr = data.get("learning_rate")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        hyper["learning_rate"] = float(lr)
    elif _constant(data.get("lr_schedule")) is not None:
        hyper["learning_rate"] = _constant(data["lr_schedule"])
    else:
        not_carried.append("the learning-rate schedule (a pickled function): lucidrl's default is used")
    if algo == "ppo":
        for key in ("clip_range", "clip_range_vf"):
            value = data.get(key)
            if value is None:
                hyper[key] = None
            elif _constant(value) is not None:
                hyper[key] = _constant(value)
            else:
                not_carried.append(f"{key} (a schedule, pickled): lucidrl's default is used")
    if algo == "dqn":
        freq = str(_readable(data.get("train_freq")).get("frequency", ""))
        unit = str(_readable(data.get("train_freq")).get("unit", ""))
        if freq.isdigit() and "step" in unit.lower():
            hyper["train_freq"] = int(freq)
        else:
            not_carried.append("train_freq (saved only as a pickle): lucidrl's default is used")
    policy_kwargs = _readable(data.get("policy_kwargs"))
    if algo == "a2c":
        optimizer = str(policy_kwargs.get("optimizer_class", ""))
        raw = policy_kwargs.get("optimizer_kwargs")
        opt_kwargs: dict[str, Any] = raw if isinstance(raw, dict) else {}
        hyper["use_rms_prop"] = "RMSprop" in optimizer
        if hyper["use_rms_prop"]:
            for ours, theirs in (("rms_prop_alpha", "alpha"), ("rms_prop_eps", "eps")):
                if isinstance(opt_kwargs.get(theirs), (int, float)):
                    hyper[ours] = float(opt_kwargs[theirs])

    # the network: layer sizes from the weights' shapes, the activation from policy_kwargs (a class, printed)
    activation_fn = str(policy_kwargs.get("activation_fn", ""))
    if activation_fn:
        name = re.search(r"\.(\w+)'>$", activation_fn)
        if not name or name.group(1) not in ACTIVATIONS:
            raise CheckpointError(
                f"the SB3 model uses activation_fn {activation_fn}; lucidrl has {', '.join(ACTIVATIONS)}"
            )
        hyper["activation"] = ACTIVATIONS[name.group(1)]
    else:
        hyper["activation"] = "relu" if algo == "dqn" else "tanh"  # SB3's defaults
    if algo == "dqn":
        n_layers = len(_layers(state_dict, "q_net.q_net"))
        hyper["net_arch"] = _hidden_sizes(state_dict, "q_net.q_net")[: n_layers - 1]
    else:
        pi = _hidden_sizes(state_dict, "mlp_extractor.policy_net")
        vf = _hidden_sizes(state_dict, "mlp_extractor.value_net")
        if pi != vf:
            raise CheckpointError(
                f"the SB3 model has net_arch pi={pi}, vf={vf}; lucidrl's {algo.upper()} gives the "
                "actor and the critic the same hidden layers, so it cannot hold this model"
            )
        hyper["net_arch"] = pi
        if isinstance(policy_kwargs.get("ortho_init"), bool):
            hyper["ortho_init"] = policy_kwargs["ortho_init"]
    if policy_kwargs.get("normalize_images") is False:
        raise CheckpointError(
            "the SB3 model was trained with normalize_images=False; lucidrl's CNN always scales "
            "uint8 pixels to [0, 1], so it would act differently"
        )
    fe_kwargs = policy_kwargs.get("features_extractor_kwargs")
    if isinstance(fe_kwargs, dict) and fe_kwargs.get("cnn_output_dim", 256) != 256:
        raise CheckpointError(
            "the SB3 model's CombinedExtractor has cnn_output_dim != 256; lucidrl's Dict encoder gives each image 256 "
            "features"
        )
    if isinstance(fe_kwargs, dict) and fe_kwargs.get("features_dim", 512) != 512:
        raise CheckpointError("the SB3 model's CNN has features_dim != 512; lucidrl's NatureCNN has 512 features")

    # build the lucidrl model; hyperparameters lucidrl refuses are reported, the network is kept
    klass = ALGORITHMS[algo]
    network: dict[str, Any] = {
        k: hyper[k] for k in ("net_arch", "activation", "ortho_init", "use_rms_prop") if k in hyper
    }
    common: dict[str, Any] = dict(preset=False, _spaces=spaces, verbose=verbose, device=device)
    common.update({k: kwargs.pop(k) for k in ("run_dir", "tensorboard", "vectorization") if k in kwargs})
    try:
        model = klass(env, **common, **{**hyper, **kwargs})
    except ConfigError as e:
        model = klass(env, **common, **{**network, **kwargs})
        not_carried.append(
            f"the hyperparameters {', '.join(sorted(set(hyper) - set(network)))} (lucidrl refused "
            f"them together: {e}); lucidrl's defaults are used"
        )
    report.append("carried over: " + ", ".join(f"{k}={v}" for k, v in hyper.items()))

    # the weights, name by name; a parameter left unmapped or a shape that differs is an error
    try:
        if algo == "dqn":
            for module_name, weights in _dqn_weights(state_dict, len(hyper["net_arch"]), model).items():
                getattr(model, module_name).load_state_dict(weights, strict=True)
        else:
            model.agent.load_state_dict(_actor_critic_weights(state_dict, model, report), strict=True)
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"the weights of {str(src)!r} do not map onto lucidrl's {algo.upper()} network "
            f"({type(e).__name__}: {str(e)[:300]})"
        ) from None
    unknown = sorted(set(state_dict) - _used_keys(state_dict))
    if unknown:
        raise CheckpointError(f"{str(src)!r} has parameters lucidrl cannot place: {', '.join(unknown[:6])}")
    from lucidrl.algos.dqn import DQN

    if isinstance(model, DQN) and isinstance(data.get("exploration_rate"), (int, float)):
        model.exploration_rate = float(data["exploration_rate"])
    if isinstance(data.get("num_timesteps"), int):
        model.num_timesteps = int(data["num_timesteps"])

    not_carried += [
        "VecNormalize statistics: SB3 keeps them in a separate pickle file (vec_normalize.pkl) that lucidrl never "
        "reads; a model trained under VecNormalize needs its observations normalised the same way",
        "the rollout state (_last_obs, episode buffers) and the random-number states: pickled",
    ]
    if algo == "dqn":
        not_carried.append("the replay buffer (SB3 saves it separately, as a pickle)")
    if info["pytorch_variables"]:
        not_carried.append(f"pytorch_variables.pth ({', '.join(info['pytorch_variables'])})")
    if env is None:
        report.append("the env id is not stored by SB3: pass env= to evaluate(), set_env() or from_sb3()")
    report += ["not carried over: " + item for item in not_carried]
    model.import_report = report
    if verbose:
        for line in report:
            print(f"from_sb3: {line}")
    return model


def import_sb3(
    path: str | os.PathLike,
    out: str | os.PathLike,
    env: EnvLike | None = None,
    algo: str | None = None,
    verbose: int = 1,
) -> tuple[Path, list[str]]:
    """``from_sb3`` then ``save(out)`` (a directory, or one zip for ``out`` ending in ``.zip``);
    returns ``(where, report)``. The CLI's ``lucidrl import-sb3 PATH OUT``."""
    model = from_sb3(path, env=env, algo=algo, verbose=verbose)
    return model.save(out), model.import_report
