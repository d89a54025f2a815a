"""Dict and Tuple observations, flattened into one vector at the env boundary.

Goal-conditioned and custom envs often return several named parts (``{"position": Box, "goal": Box,
"mode": Discrete}``). SB3's ``MultiInputPolicy`` reads such a ``Dict`` by flattening each non-image entry
(a Discrete one as a one-hot) and concatenating them in the space's key order before its MLP. lucidrl does
the same thing, once, where observations come in: :class:`FlattenStructured` wraps the vector env so that
everything behind it (rollouts, replay memory, normalisation, networks) sees one flat ``Box``, the one
``gymnasium.spaces.flatten_space`` describes, and ``Algorithm.predict`` flattens the Dict observations it
is given (:func:`flatten_observation`). The layout is Gymnasium's own ``gymnasium.spaces.flatten``, checked
against it in ``tests/contracts/test_structured_obs.py``, in float32 (float64 only where an entry is).

Image entries (3-D uint8 Boxes, as SB3 recognises them) travel flattened too, as float32 pixel values, and the
flat space remembers where they lie (:class:`FlattenedBox`): the networks' encoder
(``lucidrl.networks.StructuredEncoder``) cuts each image back out of the row and reads it with its own Nature CNN,
as SB3's ``CombinedExtractor`` does. Boxes of any other rank or dtype are plain features.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from lucidrl.errors import EnvError

S = gym.spaces


def is_structured(space: gym.Space) -> bool:
    """A Dict or Tuple space: observations in named (or numbered) parts."""
    return isinstance(space, (S.Dict, S.Tuple))


def _leaves(space: gym.Space):
    if isinstance(space, S.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(key, str):  # a checkpoint's JSON would turn it into a string, and reorder the keys
                raise EnvError(
                    f"the observation space {space!r} has a key {key!r} that is not a string; name the entries "
                    "with strings (a gymnasium.ObservationWrapper that renames them)"
                )
            yield from _leaves(sub)
    elif isinstance(space, S.Tuple):
        for sub in space.spaces:
            yield from _leaves(sub)
    else:
        yield space


def _key_order(space: gym.Space) -> Any:
    if isinstance(space, S.Dict):
        return [(key, _key_order(sub)) for key, sub in space.spaces.items()]
    if isinstance(space, S.Tuple):
        return [_key_order(sub) for sub in space.spaces]
    return None


def same_layout(a: gym.Space, b: gym.Space) -> bool:
    """Equal spaces whose Dicts also list their keys in the same order, so that their flat rows lie alike
    (Gymnasium's Dict equality ignores the order; a Dict made from a plain dict sorts its keys, one made from
    an OrderedDict or a list of pairs keeps them as given)."""
    return a == b and _key_order(a) == _key_order(b)


def is_image_entry(leaf: gym.Space) -> bool:
    """A 3-D uint8 Box: pixels, channels first or last (what SB3's ``is_image_space`` calls an image)."""
    return isinstance(leaf, S.Box) and len(leaf.shape) == 3 and leaf.dtype == np.uint8


def entries(space: gym.Space) -> list[tuple[int, int, gym.Space]]:
    """(start, stop, entry) for each entry of a Dict/Tuple space: the columns its flattened values take in a row
    (Gymnasium's ``flatten`` layout: a Box or MultiBinary its elements, a Discrete its one-hot, a MultiDiscrete its
    components' one-hots), in the space's order."""
    out, start = [], 0
    for leaf in _leaves(space):
        stop = start + int(S.flatdim(leaf))
        out.append((start, stop, leaf))
        start = stop
    return out


class FlattenedBox(S.Box):
    """The flat Box of a Dict/Tuple observation space, which also remembers that space (``structure``): the
    networks read from it where image entries lie in a row. Equal to the plain Box of the same bounds."""

    def __init__(self, structure: gym.Space, low: np.ndarray, high: np.ndarray, dtype: Any):
        super().__init__(low, high, dtype=dtype)
        self.structure = structure

    @property
    def image_entries(self) -> list[S.Box]:
        """The entries that are images, in the space's order."""
        return [leaf for leaf in _leaves(self.structure) if is_image_entry(leaf)]

    @property
    def has_images(self) -> bool:
        return bool(self.image_entries)


def flat_space(space: gym.Space) -> FlattenedBox:
    """The Box that the flattened observations of a Dict/Tuple space lie in; an EnvError for parts that have no
    fixed-size vector form (text, graphs, sequences)."""
    for leaf in _leaves(space):
        if not isinstance(leaf, (S.Box, S.Discrete, S.MultiDiscrete, S.MultiBinary)):
            raise EnvError(
                f"the observation space {space!r} has an entry {leaf!r} that has no fixed-size vector form; encode it "
                "with a gymnasium.ObservationWrapper into a Box or a Discrete index"
            )
    flat = S.flatten_space(space)
    assert isinstance(flat, S.Box)
    dtype = _flat_dtype(space)
    return FlattenedBox(space, flat.low.astype(dtype), flat.high.astype(dtype), dtype=dtype)


def _flat_dtype(space: gym.Space) -> type:
    """float32, as the networks read it, or float64 where an entry is (Gymnasium's flat dtype is the parts' common
    one: float64 beside an index)."""
    wide = any(isinstance(leaf, S.Box) and leaf.dtype == np.float64 for leaf in _leaves(space))
    return np.float64 if wide else np.float32


def _flat_rows(space: gym.Space, obs: Any, n: int) -> np.ndarray:
    """``n`` observations of ``space`` (each part with a leading dimension of ``n``) as an [n, width] array, laid out
    as ``gymnasium.spaces.flatten`` lays out one."""
    if isinstance(space, S.Dict):
        return np.concatenate([_flat_rows(sub, obs[key], n) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, S.Tuple):
        return np.concatenate([_flat_rows(sub, part, n) for sub, part in zip(space.spaces, obs)], axis=1)
    if isinstance(space, S.Discrete):  # a one-hot of the 0-based index
        index = _in_range(space, np.asarray(obs).reshape(n) - space.start, space.n)
        out = np.zeros((n, int(space.n)), dtype=space.dtype)
        out[np.arange(n), index] = 1
        return out
    if isinstance(space, S.MultiDiscrete):  # the components' one-hots side by side
        nvec, start = space.nvec.reshape(-1), space.start.reshape(-1)
        first = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        index = _in_range(space, np.asarray(obs).reshape(n, -1) - start, nvec)
        out = np.zeros((n, int(nvec.sum())), dtype=space.dtype)
        out[np.arange(n)[:, None], index + first] = 1
        return out
    return np.asarray(obs, dtype=space.dtype).reshape(n, -1)  # Box, MultiBinary


def _in_range(space: gym.Space, index: np.ndarray, n: Any) -> np.ndarray:
    """``index`` (0-based) if every entry lies in 0..n-1; else an EnvError (a one-hot would silently wrap)."""
    if (index < 0).any() or (index >= n).any():
        raise EnvError(f"an observation entry lies outside its space {space!r}")
    return index


def _batch_size(space: gym.Space, obs: Any) -> int | None:
    """None for one observation of ``space``; B for a batch (each part with a leading dimension of B)."""
    while isinstance(space, (S.Dict, S.Tuple)):
        if isinstance(space, S.Dict):
            key = next(iter(space.spaces))
            space, obs = space.spaces[key], obs[key]
        else:
            space, obs = space.spaces[0], obs[0]
    shape = np.shape(obs)
    return None if shape == tuple(space.shape or ()) else int(shape[0])


def flatten_observation(space: gym.Space, obs: Any) -> np.ndarray:
    """One Dict/Tuple observation -> [width], or a batch of them -> [B, width] (``predict``'s input)."""
    try:
        n = _batch_size(space, obs)
        rows = _flat_rows(space, obs, 1 if n is None else n)
    except EnvError as e:
        raise EnvError(f"predict: {e}") from None
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise EnvError(
            f"predict got an observation that does not fit the model's observation space {space!r} ({e}); give a "
            "dict (or tuple) with every entry, one observation or a batch with a leading dimension in every entry"
        ) from None
    rows = rows.astype(_flat_dtype(space), copy=False)  # (not flat_space: its bounds take ~1 ms for an 84x84 image)
    return rows[0] if n is None else rows


class FlattenStructured(gym.vector.VectorWrapper):
    """A vector env with Dict/Tuple observations seen as flat rows: reset's and step's observations, and the
    true final observations of same-step autoreset (``info["final_obs"]``). Gymnasium's own vector
    ``FlattenObservation`` leaves those as they are and so refuses same-step envs, whose truncated episodes
    are bootstrapped from them."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.structured_space = env.single_observation_space
        self.single_observation_space = flat_space(self.structured_space)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        self._dtype = self.single_observation_space.dtype

    def _rows(self, obs: Any, n: int) -> np.ndarray:
        return _flat_rows(self.structured_space, obs, n).astype(self._dtype, copy=False)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._rows(obs, self.num_envs), info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        final = info.get("final_obs") if isinstance(info, dict) else None
        if final is not None:
            flat = np.empty(len(final), dtype=object)
            for i, one in enumerate(final):
                flat[i] = None if one is None else self._rows(one, 1)[0]
            info = {**info, "final_obs": flat}
        return self._rows(obs, self.num_envs), rewards, terminated, truncated, info
