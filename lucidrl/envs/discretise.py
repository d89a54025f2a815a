"""State discretisation (D1 of ``lucidrl.algos.q_learning``): a Box observation -> one table row.

Each dimension i is clipped to [low_i, high_i] and cut into ``n_bins[i]`` equal bins; the bin
indices are flattened into one state index (``np.ravel_multi_index``). Unbounded dimensions need
explicit ``bounds``; CartPole has known defaults (``KNOWN_BOUNDS``). An observation beyond the
bounds, infinite ones included, goes to the edge bin; a NaN is an ``EnvError``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from lucidrl.errors import ConfigError, EnvError

# default [low, high] per dimension for Box envs whose space has infinite bounds.
KNOWN_BOUNDS: dict[str, list[float]] = {
    # x (terminates at ±2.4), x_dot, θ (terminates at ±0.2095 rad), θ_dot
    "CartPole-v1": [-2.4, 2.4, -3.0, 3.0, -0.21, 0.21, -3.5, 3.5],
    "CartPole-v0": [-2.4, 2.4, -3.0, 3.0, -0.21, 0.21, -3.5, 3.5],
}


class Discretiser:
    """(D1) Box observation -> one state index: clip to [low, high], cut each dimension into equal bins."""

    def __init__(self, low: np.ndarray, high: np.ndarray, n_bins: np.ndarray):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.n_bins = np.asarray(n_bins, np.int64)
        width = (self.high - self.low) / self.n_bins
        self.width = np.where(width > 0, width, 1.0)  # a dimension with low == high: every value in bin 0
        self.n_states = int(np.prod(self.n_bins))

    def bins(self, obs: np.ndarray) -> np.ndarray:
        """Per-dimension bin indices [B, d]: floor((x - low) / width), clipped to 0..n-1 (x = high is in the last
        bin). x is clipped to [low, high] first, so a huge or infinite x cannot overflow the integer cast."""
        x = np.asarray(obs, np.float64)
        if np.isnan(x).any():
            dims = np.flatnonzero(np.isnan(x).reshape(-1, len(self.n_bins)).any(0)).tolist()
            raise EnvError(
                f"observation dimensions {dims} are NaN, which no table row stands for: "
                "the env returned an invalid observation; check its reset() and step()"
            )
        idx = np.floor((np.clip(x, self.low, self.high) - self.low) / self.width).astype(np.int64)
        return np.minimum(idx, self.n_bins - 1)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        b = self.bins(obs)
        return np.ravel_multi_index(tuple(b.reshape(-1, len(self.n_bins)).T), tuple(self.n_bins))

    def settings(self) -> tuple[list[int], list[float]]:
        """(n_bins, bounds) as the config records them: a saved model rebuilds the same cells without its env id."""
        return [int(b) for b in self.n_bins], [float(v) for pair in zip(self.low, self.high) for v in pair]

    @classmethod
    def for_space(
        cls, space: gym.spaces.Box, n_bins: list[int], bounds: list[float], env_id: str | None = None
    ) -> Discretiser:
        """The discretiser of a Box space: ``n_bins`` (one number for every dimension, or one each) and
        ``bounds`` (low_1 high_1 ...; empty: ``KNOWN_BOUNDS`` of the env id, else the space's own bounds)."""
        d = int(np.prod(space.shape))
        per_dim = n_bins * d if len(n_bins) == 1 else n_bins
        if len(per_dim) != d:
            raise ConfigError(
                f"n_bins has {len(n_bins)} entries but the observations have {d} dimensions; give one number or {d}"
            )
        bounds = bounds or KNOWN_BOUNDS.get(env_id or "", [])
        if bounds:
            if len(bounds) != 2 * d:
                raise ConfigError(
                    f"bounds has {len(bounds)} numbers; {d}-dimensional observations need {2 * d} "
                    "(low_1 high_1 ... low_d high_d)"
                )
            low, high = np.array(bounds[::2]), np.array(bounds[1::2])
        else:
            low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
            wide = ~(np.isfinite(low) & np.isfinite(high)) | (np.abs(low) > 1e6) | (np.abs(high) > 1e6)
            if wide.any():
                raise ConfigError(
                    f"observation dimensions {np.flatnonzero(wide).tolist()} of {space} are unbounded; "
                    "give bounds=[low_1, high_1, ..., low_d, high_d] to discretise them"
                )
        return cls(low, high, np.array(per_dim))
