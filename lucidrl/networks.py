"""Networks: MLPs with orthogonal init, the Nature-DQN CNN for images, the actor's action heads, the critic.

The actor is split in two so that new action spaces plug in without touching an algorithm:

* a network maps an observation to a flat tensor of *distribution parameters*
  (``params``): the logits for a Discrete action space;
* an *action head* is a small object of pure functions on those parameters: ``sample``,
  ``mode``, ``log_prob``, ``entropy`` and ``kl``. Algorithms only ever call these.

Four heads: :class:`CategoricalHead` (Discrete actions, params = logits), :class:`DiagGaussianHead`
(1-D Box actions, params = concat(mean, log-std)), :class:`MultiCategoricalHead` (MultiDiscrete
actions: one categorical per component) and :class:`BernoulliHead` (MultiBinary actions: one coin
per bit). PPO, A2C, VPG and TRPO only call the head's functions, so they take any of them without a
change.

We write the distributions' formulas by hand instead of using ``torch.distributions``: they are
a few lines, they read as the math, and they skip the argument validation that costs
microseconds on every environment step (``tests/math/test_gaussian_head.py`` checks them
against ``torch.distributions``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypeGuard, TypeVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lucidrl.envs import space_error
from lucidrl.envs.structured import FlattenedBox, entries, is_image_entry
from lucidrl.errors import EnvError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
ActivationName = Literal["tanh", "relu", "elu"]
L = TypeVar("L", bound=nn.Linear | nn.Conv2d)


def layer_init(layer: L, std: float = math.sqrt(2), bias: float = 0.0) -> L:
    """Orthogonal weights scaled by ``std``, constant bias.

    Deviation (not in the PPO paper; from OpenAI baselines, studied by Andrychowicz et al. 2021,
    "What matters in on-policy RL", and Huang et al. 2022, "The 37 implementation details of PPO"):
    hidden layers use std sqrt(2), the policy output 0.01 (near-uniform initial policy), the
    value output 1.
    """
    nn.init.orthogonal_(layer.weight, std)
    if layer.bias is not None:  # (every layer here has one)
        nn.init.constant_(layer.bias, bias)
    return layer


def linear_layer(in_dim: int, out_dim: int, std: float = math.sqrt(2), ortho: bool = True) -> nn.Linear:
    """A Linear layer, orthogonally initialised unless ``ortho=False`` (PyTorch's default init)."""
    layer = nn.Linear(in_dim, out_dim)
    return layer_init(layer, std) if ortho else layer


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int | None,
    activation: str = "tanh",
    out_std: float = 1.0,
    ortho: bool = True,
) -> nn.Sequential:
    """Linear-activation stacks; ``out_dim=None`` ends with the last hidden activation (a trunk)."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [linear_layer(d, h, ortho=ortho), act()]
        d = h
    if out_dim is not None:
        layers.append(linear_layer(d, out_dim, std=out_std, ortho=ortho))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- observations
class OneHot(nn.Module):
    """Discrete observation index (0-based: the env boundary subtracts a space's start) -> one-hot float vector."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.one_hot(obs.long().reshape(-1), self.n).float().reshape(*obs.shape, self.n)


class MultiOneHot(nn.Module):
    """MultiDiscrete observation (0-based components) -> the components' one-hots side by side, Σ_i n_i floats."""

    first: torch.Tensor

    def __init__(self, nvec: Sequence[int]):
        super().__init__()
        self.n = int(sum(nvec))
        # component i's one-hot starts at n_1 + ... + n_{i-1}: one one_hot over all of them, summed over components
        self.register_buffer("first", torch.as_tensor(np.cumsum([0, *nvec[:-1]]), dtype=torch.long), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.one_hot(obs.long() + self.first, self.n).sum(-2).float()


class FlattenFloat(nn.Module):
    """Box observation -> flat float vector (leading batch dimensions are kept)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.ndim = len(shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float()
        return obs.flatten(start_dim=obs.dim() - self.ndim) if self.ndim != 1 else obs


class NatureCNN(nn.Module):
    """The convolutional torso of DQN (Mnih et al. 2015, "Human-level control through deep
    reinforcement learning", Nature 518, Methods: "Model architecture"), for image observations.

    conv 32 filters 8x8 stride 4 -> ReLU -> conv 64 4x4 stride 2 -> ReLU -> conv 64 3x3 stride 1
    -> ReLU -> fully connected ``features_dim`` (the paper's 512) -> ReLU. Its input in the paper is
    the last 4 preprocessed 84x84 frames, channels first; any (C, H, W) with H, W >= 36 works
    (36 is the smallest size the three convolutions leave a 1x1 map on), and a channels-last
    (H, W, C) space is transposed inside the network.

    uint8 pixels are scaled to [0, 1] here, in the network (as SB3's ``preprocess_obs``), so that
    rollouts and the replay memory keep the observations in uint8: a frame stack of 4x84x84 is
    28 KB as bytes, 113 KB as float32.

    ``ortho=True`` initialises the layers orthogonally with gain sqrt(2) (as SB3's actor-critic
    policies do to their feature extractor); ``False`` keeps PyTorch's default init (SB3's DQN).
    """

    def __init__(
        self, space: gym.spaces.Box, features_dim: int = 512, ortho: bool = True, algo: str = "this algorithm"
    ):
        super().__init__()
        shape = tuple(int(s) for s in space.shape)
        self.channels_last = image_channels_last(shape)
        c, h, w = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        if h < 36 or w < 36:
            raise EnvError(
                f"{algo}: the Nature-DQN CNN needs images of at least 36x36 pixels (its three convolutions "
                f"shrink 36 to 1); got {h}x{w} from {space}. Resize the frames with "
                "gymnasium.wrappers.ResizeObservation, or flatten them with gymnasium.wrappers.FlattenObservation "
                "to use an MLP."
            )
        self.ndim = 3
        self.scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        n_flat = self.conv(torch.zeros(1, c, h, w)).shape[1]  # 64 * 7 * 7 = 3136 for 84x84
        self.fc = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())
        self.features_dim = features_dim
        if ortho:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    layer_init(m, math.sqrt(2))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[..., C, H, W] (or [..., H, W, C]) pixels -> [..., features_dim] features; batch dims are kept."""
        batch_shape = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:])
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        if self.scale != 1.0:  # uint8 [0, 255] -> [0, 1]; in place only on the copy .float() made of uint8 pixels
            x = x.float().mul_(self.scale) if x.dtype == torch.uint8 else x.float() * self.scale
        return self.fc(self.conv(x.float())).reshape(*batch_shape, self.features_dim)


class StructuredEncoder(nn.Module):
    """Dict/Tuple observations with image entries (SB3's ``MultiInputPolicy``, its ``CombinedExtractor``).

    Such observations arrive as flat rows (``lucidrl.envs.structured``: each entry's values side by side, an
    image's pixels as float32 values 0-255). Each image entry is cut back out of the row, reshaped to its
    (C, H, W) or (H, W, C) and read by its own :class:`NatureCNN` with ``cnn_features`` outputs (SB3's
    ``cnn_output_dim``, 256); every other entry passes as it is (one-hots, floats). The pieces are
    concatenated in the space's order, which is the input of the MLP above: for a Dict of an image and a
    3-vector, 256 + 3 features.
    """

    def __init__(self, structure: gym.Space, algo: str, ortho: bool = True, cnn_features: int = 256):
        super().__init__()
        self.cnns = nn.ModuleList()
        self.image_shapes: list[tuple[int, ...]] = []
        self.pieces: list[tuple[int, int, int]] = []  # (start, stop, CNN index or -1 for plain features)
        for start, stop, leaf in entries(structure):
            if is_image_entry(leaf):
                assert isinstance(leaf, gym.spaces.Box)
                shape = tuple(int(n) for n in leaf.shape)
                h, w = shape[:2] if image_channels_last(shape) else shape[1:]
                if h < 36 or w < 36:  # said here, with the fix for an entry (NatureCNN's own names whole frames)
                    raise EnvError(
                        f"{algo}: the observation space {structure!r} has an image entry {leaf!r} of {h}x{w} pixels; "
                        "the Nature-DQN CNN that reads it needs at least 36x36 (its three convolutions shrink 36 to "
                        "1). Resize it with a gymnasium.ObservationWrapper, or give it another dtype than uint8 to "
                        "have it read as plain features"
                    )
                self.cnns.append(NatureCNN(leaf, cnn_features, ortho=ortho, algo=algo))
                self.image_shapes.append(shape)
                self.pieces.append((start, stop, len(self.cnns) - 1))
            elif self.pieces and self.pieces[-1][2] < 0:  # next to other plain features: one slice
                self.pieces[-1] = (self.pieces[-1][0], stop, -1)
            else:
                self.pieces.append((start, stop, -1))
        self.features_dim = sum(cnn_features if k >= 0 else stop - start for start, stop, k in self.pieces)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[..., row width] -> [..., features_dim]; batch dims are kept."""
        batch_shape = obs.shape[:-1]
        out = []
        for start, stop, k in self.pieces:
            piece = obs[..., start:stop]
            if k >= 0:
                piece = self.cnns[k](piece.reshape(*batch_shape, *self.image_shapes[k]))
            out.append(piece.float())
        return torch.cat(out, dim=-1)


def image_channels_last(shape: tuple[int, ...]) -> bool:
    """True for an (H, W, C) image, False for (C, H, W): the channel axis is the smaller end (as SB3)."""
    return shape[-1] < shape[0]


def is_image_space(space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    """A 3-D Box: (C, H, W) or (H, W, C) pixels, e.g. Atari's stacked (4, 84, 84) uint8 frames."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def obs_encoder(space: gym.Space, algo: str, ortho: bool = True) -> tuple[nn.Module, int]:
    """The module that turns raw observations into network input, and its output size.

    Discrete: one-hot of the 0-based index (``lucidrl.envs.DiscreteOffsets`` subtracts the space's start where
    observations come in, in ``rollout.VectorStepper`` and ``Algorithm.predict``); a 1-D MultiDiscrete: the
    components' one-hots side by side (as SB3's preprocessing). Box or MultiBinary with at most 2 dimensions:
    flattened floats. A 3-D Box (an image, channels first or last; uint8 pixels are scaled to [0, 1]): the
    Nature-DQN CNN (:class:`NatureCNN`), whose 512 features the heads then read; in an ``ActorCritic`` the one
    encoder is shared by actor and critic. A flattened Dict/Tuple with image entries: :class:`StructuredEncoder`
    (a CNN per image, the other entries as they are). ``ortho``: orthogonal init of the CNN (see NatureCNN).
    """
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(int(space.n)), int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.shape) == 1:
        encoder = MultiOneHot(space.nvec.tolist())
        return encoder, encoder.n
    if isinstance(space, FlattenedBox) and space.has_images:  # a Dict/Tuple with images (lucidrl.envs.structured)
        structured = StructuredEncoder(space.structure, algo, ortho=ortho)
        return structured, structured.features_dim
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)) and len(space.shape) <= 2:
        return FlattenFloat(space.shape), int(math.prod(space.shape))
    if is_image_space(space):
        cnn = NatureCNN(space, ortho=ortho, algo=algo)
        return cnn, cnn.features_dim
    raise space_error(
        algo,
        "takes a Discrete or 1-D MultiDiscrete observation space, a Box or MultiBinary of at most 2 dimensions, "
        "or an image (a 3-D Box, channels first or last)",
        space,
        "observation",
    )


# --------------------------------------------------------------------------- action heads
def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Gumbel noise g = -log(E), E ~ Exp(1), of ``shape``: argmax(logits + g) samples softmax(logits)."""
    return torch.empty(shape, device=device).exponential_(generator=generator).log_().neg_()


class CategoricalHead:
    """π(a|s) = softmax(logits)_a for a Discrete action space; ``params`` are the logits [..., n]."""

    def __init__(self, n: int):
        self.n = n
        self.n_params = n
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = torch.long

    def noise(
        self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Gumbel noise (``gumbel_noise``), one per action: [*batch_shape, n]."""
        return gumbel_noise((*batch_shape, self.n), generator, device)

    def sample(
        self, logits: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Gumbel-max: argmax(logits + g), g Gumbel noise, is an exact sample of softmax(logits).

        ``noise``: g drawn beforehand (``noise()``); a rollout draws all of its noise at once, so the
        actions depend only on the generator's stream, whichever backend computes the logits."""
        if noise is None:
            noise = self.noise(logits.shape[:-1], generator, logits.device)
        return (logits + noise).argmax(-1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def log_prob(self, logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(-1).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, logits_old: torch.Tensor, logits_new: torch.Tensor) -> torch.Tensor:
        """KL(π_old || π_new) per state, exact."""
        logp_old = logits_old.log_softmax(-1)
        return (logp_old.exp() * (logp_old - logits_new.log_softmax(-1))).sum(-1)


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Bounds of the Gaussian policy's log σ (SB3's and Spinning Up's SAC use the same): σ stays in
[2e-9, 7.4], so log π, the entropy and the KL stay finite whatever the optimiser does."""


class DiagGaussianHead:
    """π(a|s) = Π_i N(a_i; μ_i(s), σ_i²) for a 1-D Box action space of d dimensions.

    ``params`` are concat(μ, log σ) over the last dim: [..., 2d]. Log-probabilities and entropies are
    sums over the d action dimensions (the dimensions are independent). Samples are *not* clipped to
    the action bounds here: clipping happens only where actions leave for the env
    (``lucidrl.rollout``, ``Algorithm.predict``), so log_prob scores the sample that was drawn.
    """

    def __init__(self, d: int):
        self.d = d
        self.n_params = 2 * d
        self.action_shape: tuple[int, ...] = (d,)
        self.action_dtype = torch.float32

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ), each [..., d]."""
        return params[..., : self.d], params[..., self.d :]

    def noise(
        self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Standard normal ε ~ N(0, I): [*batch_shape, d]."""
        return torch.randn((*batch_shape, self.d), generator=generator, device=device)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """a = μ + σ ε, ε ~ N(0, I) from ``generator`` (or ``noise``, drawn beforehand)."""
        mean, log_std = self.split(params)
        if noise is None:
            noise = self.noise(mean.shape[:-1], generator, mean.device)
        return mean + log_std.exp() * noise

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return self.split(params)[0]

    def log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) = Σ_i [ -(a_i - μ_i)² / (2σ_i²) - log σ_i - ½ log 2π ]."""
        mean, log_std = self.split(params)
        z = (action - mean) * (-log_std).exp()
        return (-0.5 * z.square() - log_std).sum(-1) - self.d * _HALF_LOG_2PI

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """H = Σ_i [ log σ_i + ½ (1 + log 2π) ]."""
        return self.split(params)[1].sum(-1) + self.d * (0.5 + _HALF_LOG_2PI)

    def kl(self, params_old: torch.Tensor, params_new: torch.Tensor) -> torch.Tensor:
        """KL(π_old || π_new) per state, exact: Σ_i [ log(σ_new/σ_old) + (σ_old² + (μ_old-μ_new)²)/(2σ_new²) - ½ ]."""
        mean_old, log_std_old = self.split(params_old)
        mean_new, log_std_new = self.split(params_new)
        var_ratio = (2.0 * (log_std_old - log_std_new)).exp()  # σ_old² / σ_new²
        mean_term = ((mean_old - mean_new) * (-log_std_new).exp()).square()  # (μ_old-μ_new)² / σ_new²
        return (log_std_new - log_std_old + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class MultiCategoricalHead:
    """π(a|s) = Π_i softmax(logits_i)_{a_i} for a MultiDiscrete action space with nvec = (n_1, ..., n_k).

    One categorical per component, independent given s (as SB3's MultiCategorical): ``params`` are the k
    logit vectors side by side, [..., n_1 + ... + n_k]; an action is k 0-based indices. Log-probabilities,
    entropies and KLs are sums over the components, as the Gaussian's are sums over its dimensions.
    """

    def __init__(self, nvec: Sequence[int]):
        self.nvec = [int(n) for n in nvec]
        self.parts = [CategoricalHead(n) for n in self.nvec]
        self.n_params = sum(self.nvec)
        self.action_shape: tuple[int, ...] = (len(self.nvec),)
        self.action_dtype = torch.long

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits_1, ..., logits_k), each [..., n_i]."""
        return params.split(self.nvec, dim=-1)

    def noise(
        self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Gumbel noise (``gumbel_noise``), one per logit of every component: [*batch_shape, n_1 + ... + n_k]."""
        return gumbel_noise((*batch_shape, self.n_params), generator, device)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each component by Gumbel-max on its own logits: [..., k]."""
        if noise is None:
            noise = self.noise(params.shape[:-1], generator, params.device)
        parts = zip(self.parts, self.split(params), self.split(noise))
        return torch.stack([head.sample(logits, noise=g) for head, logits, g in parts], -1)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([logits.argmax(-1) for logits in self.split(params)], -1)

    def log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) = Σ_i log softmax(logits_i)_{a_i}."""
        parts = zip(self.parts, self.split(params))
        return torch.stack([head.log_prob(logits, action[..., i]) for i, (head, logits) in enumerate(parts)]).sum(0)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """H = Σ_i H(softmax(logits_i))."""
        return torch.stack([head.entropy(logits) for head, logits in zip(self.parts, self.split(params))]).sum(0)

    def kl(self, params_old: torch.Tensor, params_new: torch.Tensor) -> torch.Tensor:
        """KL(π_old || π_new) per state, exact: Σ_i KL of component i (independent components)."""
        pairs = zip(self.parts, self.split(params_old), self.split(params_new))
        return torch.stack([head.kl(old, new) for head, old, new in pairs]).sum(0)


class BernoulliHead:
    """π(a|s) = Π_i p_i^{a_i} (1 - p_i)^{1 - a_i}, p_i = σ(logit_i), for a MultiBinary action space of n bits.

    One independent coin per bit (as SB3's Bernoulli): ``params`` are the n logits [..., n]; an action is
    n values in {0, 1}. log p_i = log σ(logit_i) and log(1 - p_i) = log σ(-logit_i), computed as such
    (``F.logsigmoid``) so that a large logit does not round p_i to 1 and log(1 - p_i) to -inf.
    """

    def __init__(self, n: int):
        self.n = n
        self.n_params = n
        self.action_shape: tuple[int, ...] = (n,)
        self.action_dtype = torch.long

    def noise(
        self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Uniform u ~ U[0, 1), one per bit: [*batch_shape, n]."""
        return torch.rand((*batch_shape, self.n), generator=generator, device=device)

    def sample(
        self, logits: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """a_i = 1 if u_i < p_i (probability p_i), else 0."""
        if noise is None:
            noise = self.noise(logits.shape[:-1], generator, logits.device)
        return (noise < logits.sigmoid()).long()

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long()  # p_i > 1/2

    def log_prob(self, logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) = Σ_i [ a_i log p_i + (1 - a_i) log(1 - p_i) ]."""
        a = action.to(logits.dtype)
        return (a * F.logsigmoid(logits) + (1 - a) * F.logsigmoid(-logits)).sum(-1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H = -Σ_i [ p_i log p_i + (1 - p_i) log(1 - p_i) ]."""
        p = logits.sigmoid()
        return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).sum(-1)

    def kl(self, logits_old: torch.Tensor, logits_new: torch.Tensor) -> torch.Tensor:
        """KL(π_old || π_new) per state, exact: Σ_i [ p log(p / q) + (1 - p) log((1 - p) / (1 - q)) ], p old, q new."""
        p = logits_old.sigmoid()
        log_ratio_1 = F.logsigmoid(logits_old) - F.logsigmoid(logits_new)
        log_ratio_0 = F.logsigmoid(-logits_old) - F.logsigmoid(-logits_new)
        return (p * log_ratio_1 + (1 - p) * log_ratio_0).sum(-1)


def bound_gradient_passes(x, grad, lo: float = LOG_STD_MIN, hi: float = LOG_STD_MAX):
    """Where the gradient of clamp(x, lo, hi) passes in :class:`_BoundedLogStd`: inside the bounds, and outside
    them only where a descent step (x -= lr * grad) moves x back. Torch tensors or NumPy arrays."""
    return ((x >= lo) & (x <= hi)) | ((x > hi) & (grad > 0)) | ((x < lo) & (grad < 0))


class _BoundedLogStd(torch.autograd.Function):
    """clamp(x, lo, hi) whose gradient never pushes x further outside the bounds but can pull it back.

    ``torch.clamp`` has zero gradient outside [lo, hi]: a log σ that overshot a bound (an Adam step
    can) would stay there for good. Here the gradient passes inside the bounds, and outside them
    only when a descent step (x -= lr * grad) moves x back towards [lo, hi].
    """

    generate_vmap_rule = True  # torch.func.vmap batches it (vmap_train): forward and backward are plain tensor ops

    @staticmethod
    def forward(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, lo, hi = inputs
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        passes = bound_gradient_passes(x, grad.detach(), lo, hi)
        return torch.where(passes, grad, torch.zeros_like(grad)), None, None  # differentiable in grad (TRPO's FVP)


class StateIndependentLogStd(nn.Module):
    """The Gaussian actor's last module: μ [..., d] -> concat(μ, log σ) [..., 2d].

    log σ is one free parameter per action dimension, the same in every state: as in the PPO
    paper's continuous-control experiments (Schulman et al. 2017, section 6.1), SB3 and CleanRL.
    Deviation (not in the PPO/TRPO papers, which leave log σ free): it is bounded to
    [LOG_STD_MIN, LOG_STD_MAX] by :class:`_BoundedLogStd`, a safety net against σ collapsing to 0 or
    blowing up (NaN log-probabilities and ratios). No switch: σ in [2e-9, 7.4] is never reached by a
    run that is learning, so the bound changes nothing there.
    """

    def __init__(self, d: int, log_std_init: float = 0.0):
        super().__init__()
        self.log_std = nn.Parameter(torch.full((d,), float(log_std_init)))

    def bounded_log_std(self) -> torch.Tensor:
        return _BoundedLogStd.apply(self.log_std, LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        return torch.cat([mean, self.bounded_log_std().expand_as(mean)], -1)


def make_head(space: gym.Space, algo: str):
    """The action head for an action space, or an EnvError naming the space, what is supported and the fix.

    Discrete and MultiDiscrete actions are 0-based indices here; ``lucidrl.envs.DiscreteOffsets`` adds the
    space's start where they leave for the env."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) != 1:
        raise space_error(
            algo,
            "takes a Box action space of one dimension (a vector of d actions)",
            space,
            "action",
            f"Its shape is {space.shape}: reshape the actions with a gymnasium.ActionWrapper whose "
            "action_space is a flat Box.",
        )
    if isinstance(space, gym.spaces.Box) and not np.issubdtype(space.dtype, np.floating):
        raise space_error(
            algo,
            "takes a 1-D Box action space of floats (a Gaussian policy samples real numbers)",
            space,
            "action",
            "Expose a Box of floats with a gymnasium.ActionWrapper that rounds the "
            "actions, or a Discrete action space.",
        )
    if isinstance(space, gym.spaces.Box):
        return DiagGaussianHead(int(space.shape[0]))
    if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and len(space.shape) != 1:
        raise space_error(
            algo,
            f"takes a {type(space).__name__} action space of one dimension",
            space,
            "action",
            f"Its shape is {space.shape}: expose a 1-D {type(space).__name__} with a gymnasium.ActionWrapper "
            "that reshapes the actions.",
        )
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(space.nvec.tolist())
    if isinstance(space, gym.spaces.MultiBinary):
        return BernoulliHead(int(space.shape[0]))
    raise space_error(algo, "takes a Discrete, MultiDiscrete, MultiBinary or 1-D Box action space", space, "action")


# --------------------------------------------------------------------------- actor-critic
class ActorCritic(nn.Module):
    """The bundle of actor (π) and critic (V) for the policy-gradient algorithms.

    ``shared=False`` (default, as SB3's MlpPolicy): two separate MLPs.
    ``shared=True``: one trunk, two linear outputs (A2C/A3C style; cheaper, but the value loss
    and the policy loss then pull on the same features, weighted by ``vf_coef``).

    Image observations go through the Nature CNN (``obs_encoder``). ``share_encoder=True`` (PPO,
    A2C, as SB3) gives actor and critic one CNN, trained by the sum of their losses;
    ``share_encoder=False`` (TRPO and VPG, which step the policy and fit the critic separately)
    gives each its own, so that the critic's regression never moves π and the policy's step
    trains the policy's CNN (``actor_parameters`` / ``critic_parameters``).

    For a Box action space the actor's network outputs the mean μ(s) and ends with a
    :class:`StateIndependentLogStd` (log σ starts at ``log_std_init``), so every actor output,
    ``policy_params`` and ``forward``, is concat(μ, log σ), and the actor's parameters include log σ.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        net_arch: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        ortho_init: bool = True,
        algo: str = "this algorithm",
        log_std_init: float = 0.0,
        share_encoder: bool = True,
    ):
        super().__init__()
        self.head = make_head(action_space, algo)
        self.encoder, in_dim = obs_encoder(obs_space, algo, ortho=ortho_init)
        # the critic's own encoder, where the encoder has weights (a CNN) and they are not shared
        self.critic_encoder = None
        if not share_encoder and not shared and any(True for _ in self.encoder.parameters()):
            self.critic_encoder, _ = obs_encoder(obs_space, algo, ortho=ortho_init)
        self.shared = shared
        gaussian = isinstance(self.head, DiagGaussianHead)
        n_out = self.head.d if gaussian else self.head.n_params  # the network gives μ; log σ is appended
        if shared:
            self.trunk = mlp(in_dim, net_arch, None, activation, ortho=ortho_init)
            last = net_arch[-1] if net_arch else in_dim
            out: nn.Module = linear_layer(last, n_out, std=0.01, ortho=ortho_init)
            self.actor_out = nn.Sequential(out, StateIndependentLogStd(n_out, log_std_init)) if gaussian else out
            self.critic_out = linear_layer(last, 1, std=1.0, ortho=ortho_init)
        else:
            self.actor = mlp(in_dim, net_arch, n_out, activation, out_std=0.01, ortho=ortho_init)
            if gaussian:
                self.actor.append(StateIndependentLogStd(n_out, log_std_init))
            self.critic = mlp(in_dim, net_arch, 1, activation, out_std=1.0, ortho=ortho_init)

    def actor_parameters(self) -> list[nn.Parameter]:
        """θ, what π depends on: the actor's encoder and MLP (separate networks only)."""
        return [*self.encoder.parameters(), *self.actor.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """φ, what V depends on and π does not (separate networks and encoders only)."""
        encoder = self.critic_encoder if self.critic_encoder is not None else nn.Module()
        return [*encoder.parameters(), *self.critic.parameters()]

    def policy_params(self, obs: torch.Tensor) -> torch.Tensor:
        """Distribution parameters of π(·|s): logits for Discrete, MultiDiscrete and MultiBinary actions,
        concat(μ, log σ) for Box ones."""
        x = self.encoder(obs)
        return self.actor_out(self.trunk(x)) if self.shared else self.actor(x)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape [...] (no trailing 1)."""
        if self.shared:
            return self.critic_out(self.trunk(self.encoder(obs))).squeeze(-1)
        encoder = self.encoder if self.critic_encoder is None else self.critic_encoder
        return self.critic(encoder(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy params, V(s)) in one pass (a shared trunk or encoder runs once)."""
        x = self.encoder(obs)
        if self.shared:
            h = self.trunk(x)
            return self.actor_out(h), self.critic_out(h).squeeze(-1)
        x_critic = x if self.critic_encoder is None else self.critic_encoder(obs)
        return self.actor(x), self.critic(x_critic).squeeze(-1)


# --------------------------------------------------------------------------- Q-network
class QNetwork(nn.Module):
    """Q(s, ·): an MLP from an observation to one action value per Discrete action (DQN's network).

    Image observations first go through the Nature CNN (``obs_encoder``), as in the DQN paper.

    As SB3's DQN ``QNetwork``: ReLU hidden layers and PyTorch's default initialisation
    (``ortho_init=False``). A Box action space gets an EnvError: a Q-network needs a finite set of
    actions to take the max over.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        net_arch: Sequence[int] = (64, 64),
        activation: str = "relu",
        ortho_init: bool = False,
        algo: str = "DQN",
    ):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise space_error(algo, "needs a Discrete action space (one Q-value per action)", action_space, "action")
        self.n_actions = int(action_space.n)
        self.encoder, in_dim = obs_encoder(obs_space, algo, ortho=ortho_init)
        self.q = mlp(in_dim, net_arch, self.n_actions, activation, out_std=1.0, ortho=ortho_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for every action: [..., n_actions]."""
        return self.q(self.encoder(obs))
