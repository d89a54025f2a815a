"""Running observation normalisation and discounted-return reward scaling, as model state.

Both are ``torch.nn.Module``s whose statistics are registered buffers, so they travel in the
model's ``state_dict`` (its safetensors checkpoint) like any weight. The algorithm owns them
(``Algorithm.obs_normalizer`` / ``Algorithm.reward_scaler``); the rollout collector updates
them while it collects, and ``predict`` / ``evaluate`` only *apply* them (frozen).

Equations:

* (N1) parallel mean/variance (Chan, Golub & LeVeque 1979, "Updating formulae and a pairwise
  algorithm for computing sample variances"; the combination SB3's ``RunningMeanStd`` uses):
  merging statistics (μ_a, σ²_a, n_a) with a batch's (μ_b, σ²_b, n_b), δ = μ_b - μ_a, n = n_a + n_b:
  μ = μ_a + δ·n_b/n,   σ² = (σ²_a·n_a + σ²_b·n_b + δ²·n_a·n_b/n) / n.
* (N2) observation normalisation: clip((x - μ) / sqrt(σ² + ε), -clip_obs, clip_obs).
* (N3) reward scaling (Engstrom et al. 2020, "Implementation Matters in Deep Policy Gradients",
  section 3 / Algorithm 2; SB3's ``VecNormalize``): per env, a running discounted return
  R ← γR + r, reset to 0 when the episode ends; r is divided by the running standard deviation
  of R (not shifted by a mean, so the sign of a reward is kept): clip(r / sqrt(Var[R] + ε), ±clip_reward).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from lucidrl.errors import ConfigError


class RunningMeanStd(nn.Module):
    """Mean and (population) variance of everything seen so far, per feature; buffers in float64.

    ``count`` starts at ``epsilon`` (SB3's 1e-4) with mean 0 and variance 1, so the first batch
    almost entirely replaces the start values and nothing divides by zero.
    """

    mean: torch.Tensor  # the buffers (registered in __init__), typed for the checker
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, device: torch.device | str = "cpu"):
        super().__init__()
        self.shape = tuple(shape)  # (a plain attribute: read at every env step, unlike a buffer's through nn.Module)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64, device=device))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64, device=device))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64, device=device))

    def update(self, x: torch.Tensor | np.ndarray) -> None:
        """Add a batch x of shape [B, *shape] (B >= 1)."""
        if isinstance(x, np.ndarray) and self.on_cpu():  # speed: NumPy on small CPU arrays
            x = x.reshape(-1, *self.shape).astype(np.float64, copy=False)
            n = x.shape[0]
            if n == 1:  # one env: the batch's mean is its row and its variance 0, exactly as mean/var give
                self.update_from_moments(x[0], 0.0, 1)
            else:  # x.mean(0) and x.var(0), bit for bit, without their Python-level overhead
                batch_mean = np.add.reduce(x, 0) / n
                d = x - batch_mean
                self.update_from_moments(batch_mean, np.add.reduce(d * d, 0) / n, n)
            return
        x = torch.as_tensor(x, device=self.mean.device).to(torch.float64).reshape(-1, *self.mean.shape)
        self.update_from_moments(x.mean(0), x.var(0, unbiased=False), x.shape[0])

    def update_from_moments(self, batch_mean, batch_var, batch_count: int) -> None:
        """(N1) merge a batch's mean, population variance and size into the running statistics.

        The moments are tensors, or NumPy arrays / floats when the buffers are on the CPU: then the
        update runs in NumPy on views of the buffers (less per-call overhead than torch ops on a few numbers).
        """
        mean: Any  # NumPy views or the tensors themselves: the same arithmetic on either
        var: Any
        count: Any
        if not isinstance(batch_mean, torch.Tensor) and self.on_cpu():
            mean, var, count_view = self.numpy_views()  # written in place
            # a Python float: the same float64 arithmetic, less overhead than a 0-d array (buffers made float32 by
            # .float() keep their own precision: the 0-d array then)
            count = float(count_view) if count_view.dtype == np.float64 else count_view
        else:
            mean, var, count = self.mean, self.var, self.count
            count_view = count
        delta = batch_mean - mean
        total = count + batch_count
        m2 = var * count + batch_var * batch_count + delta * delta * count * batch_count / total  # (N1)
        mean += delta * (batch_count / total)  # (N1)
        var[...] = m2 / total
        count_view[...] = total

    def on_cpu(self) -> bool:
        """Whether the buffers are on the CPU (read from the module's buffer table: ``self.mean`` goes through
        nn.Module's attribute lookup, a microsecond at every env step)."""
        return self._buffers["mean"].is_cpu  # type: ignore[union-attr]

    def numpy_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NumPy views of (mean, var, count) on the CPU, made once per storage (this runs at every env step)."""
        buffers = self._buffers
        mean, var, count = buffers["mean"], buffers["var"], buffers["count"]
        assert mean is not None and var is not None and count is not None
        key = (mean.data_ptr(), var.data_ptr(), count.data_ptr())
        cached = self.__dict__.get("_views")
        if cached is None or cached[0] != key:
            self._views = cached = (key, (mean.numpy(), var.numpy(), count.numpy()))
        return cached[1]

    def __getstate__(self) -> dict:
        """Pickle and deepcopy (Ray workers, ``copy.deepcopy``) leave the cached views out: a copy's would be arrays
        of their own, no longer views of its buffers, and could match its buffers' addresses in another process."""
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


class ObsNormalizer(nn.Module):
    """(N2) ``forward(obs)`` normalises with the current statistics (never changes them);
    ``update(obs)`` adds a batch of raw observations to them (the rollout collector does, in training)."""

    def __init__(
        self, shape: tuple[int, ...], clip_obs: float = 10.0, epsilon: float = 1e-8, device: torch.device | str = "cpu"
    ):
        super().__init__()
        self.rms = RunningMeanStd(shape, device=device)
        self.clip_obs = float(clip_obs)
        self.epsilon = float(epsilon)

    def update(self, obs: torch.Tensor | np.ndarray) -> None:
        self.rms.update(obs)

    def update_and_normalize(self, raw_obs: np.ndarray) -> np.ndarray:
        """Training: add a batch of raw observations to the statistics, then normalise it (N2), NumPy in and out."""
        self.rms.update(raw_obs)
        if not self.rms.on_cpu():
            return self(torch.as_tensor(raw_obs, device=self.rms.mean.device)).cpu().numpy()
        mean, var, _ = self.rms.numpy_views()
        z = (raw_obs - mean) / np.sqrt(var + self.epsilon)  # (N2)
        # np.clip's result with less overhead (this runs at every env step)
        return np.minimum(np.maximum(z, -self.clip_obs), self.clip_obs).astype(np.float32)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised float32 observations, the same shape as ``obs``."""
        z = (obs.to(torch.float64) - self.rms.mean) / (self.rms.var + self.epsilon).sqrt()  # (N2)
        return z.clamp_(-self.clip_obs, self.clip_obs).to(torch.float32)


class RewardScaler(nn.Module):
    """(N3) scales rewards by the running std of the discounted return, one return per env.

    The running variance of R (``rms``) is model state and is saved with the weights; the per-env
    returns R in flight (``returns``) are saved with the checkpoint too (``run/reward_returns``), and
    a resumed run continues them (docs/normalization.md, section 3).
    """

    def __init__(
        self, gamma: float, clip_reward: float = 10.0, epsilon: float = 1e-8, device: torch.device | str = "cpu"
    ):
        super().__init__()
        self.rms = RunningMeanStd((), device=device)
        self.gamma = float(gamma)
        self.clip_reward = float(clip_reward)
        self.epsilon = float(epsilon)
        self.returns: np.ndarray | None = None  # R of each env, float64 [N]

    def scale(
        self, reward: np.ndarray, done: np.ndarray, update: bool = True, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """Scaled rewards of one vector-env step (float32 [N]); ``done`` = terminated | truncated.

        With ``update``: R ← γR + r (N3), the running variance takes in the new R, then the
        scaling uses it, and R is reset to 0 where the episode ended (SB3's order). ``valid``
        (optional bool [N]) leaves copies out of the statistics, e.g. NEXT_STEP reset steps,
        whose reward 0 is not part of any episode.
        """
        reward = np.asarray(reward, dtype=np.float64)
        if update:
            if self.returns is None or self.returns.shape != reward.shape:
                self.returns = np.zeros_like(reward)
            self.returns = self.returns * self.gamma + reward  # (N3) running discounted return
            seen = self.returns if valid is None else self.returns[valid]
            if seen.size:
                self.rms.update(seen)
            self.returns[np.asarray(done, dtype=bool)] = 0.0  # a new episode starts its return at 0
        rms = self.rms
        std = math.sqrt(float(rms.numpy_views()[1] if rms.on_cpu() else rms.var) + self.epsilon)
        return np.minimum(np.maximum(reward / std, -self.clip_reward), self.clip_reward).astype(np.float32)  # (N3) clip

    def scale_on_device(
        self, reward: torch.Tensor, done: torch.Tensor, returns: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale`` as tensor ops on the statistics' device, for batched torch envs (``DeviceRolloutCollector``):
        the same steps in the same order, with the returns in flight R (float64 [N]) passed in and returned, no
        host round trip. Returns (scaled rewards float32 [N], R after the step)."""
        reward = reward.to(torch.float64)
        returns = returns * self.gamma + reward  # (N3) running discounted return
        self.rms.update(returns)
        scaled = (reward / (self.rms.var + self.epsilon).sqrt()).clamp_(-self.clip_reward, self.clip_reward)  # (N3)
        return scaled.to(torch.float32), torch.where(done, 0.0, returns)  # a new episode starts its return at 0

    def forward(self, reward: np.ndarray) -> np.ndarray:
        """Scaled rewards with the current statistics, changing nothing."""
        std = math.sqrt(float(self.rms.var) + self.epsilon)
        return np.clip(np.asarray(reward, dtype=np.float64) / std, -self.clip_reward, self.clip_reward).astype(
            np.float32
        )


def make_normalizers(config, observation_space, device) -> tuple[ObsNormalizer | None, RewardScaler | None]:
    """The normalisers a config asks for (``normalize_obs``, ``normalize_reward``); ``(None, None)`` by default.

    Configs without these fields (DQN, tabular Q-learning) get none.
    """
    obs_norm = rew_scale = None
    if getattr(config, "normalize_obs", False):
        import gymnasium as gym

        if not isinstance(observation_space, gym.spaces.Box) or not np.issubdtype(observation_space.dtype, np.floating):
            raise ConfigError(
                f"normalize_obs needs a Box observation space of floats, got {observation_space}; "
                "discrete and image (uint8) observations are not normalised this way: set normalize_obs=False"
            )
        from lucidrl.envs.structured import FlattenedBox

        if isinstance(observation_space, FlattenedBox) and observation_space.has_images:  # a Dict with images
            raise ConfigError(
                f"normalize_obs with image entries in the observations ({observation_space.structure}): the pixels "
                "would be normalised before the CNN scales them to [0, 1]. Set normalize_obs=False, or normalise the "
                "other entries with a gymnasium.ObservationWrapper"
            )
        obs_norm = ObsNormalizer(observation_space.shape, config.clip_obs, device=device)
    if getattr(config, "normalize_reward", False):
        rew_scale = RewardScaler(config.gamma, config.clip_reward, device=device)
    return obs_norm, rew_scale
