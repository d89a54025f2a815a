"""Compute settings while a model learns: how many threads torch and NumPy's BLAS use, chosen per workload,
denormal floats flushed to zero, and on a GPU the precision of float32 matrix products; restored after. Also, once
per process on Linux, glibc's allocator is told to keep freed memory (``tune_malloc``; not restorable).

Why this is the library's business: PyTorch starts with one thread per core. For the small MLPs
of classic control that is slower than one thread (a matrix product of 256x64 costs less than
waking a second thread), and when another process keeps a core busy, torch's threads wait for
each other: measured on this project's 2-core machine, PPO on CartPole (zoo preset) took 75.8 s
at torch's default threads with the machine otherwise idle, against ~3 s on one thread, and a
run beside another job trained at 248 steps/s against 18,800. NumPy brings its own BLAS
(OpenBLAS), which sizes its pool by the cores and ignores ``torch.set_num_threads``.

``torch_threads`` (every config; CLI ``--torch-threads``): ``"auto"`` takes one thread, except for
images of at least 64x64 pixels (Atari's 84x84 frames), whose convolutions are large enough to
share, where it leaves torch's own count; a number sets it. Measured: A2C on a 36x36 image task
(``tests/learning/test_image_learning.py``) took 2.1 s on one thread and 7.2 s on two. ``hold_threads``
applies the choice to torch for the duration of ``learn``, holds NumPy's BLAS at one thread
(threadpoolctl) whatever torch's count, and restores both afterwards, so a user's script sees its own
settings again.

Why NumPy's BLAS stays at one thread: its products in lucidrl are the fast backend's small ones
(``lucidrl.fast``: minibatches, acting, DQN's steps), where a second OpenBLAS thread only waits, and
where OpenBLAS's pool and torch's spin against each other when both have two threads on two cores.
Measured on this project's 2-core machine with torch on 2 threads: a DQN gradient step of the fast
backend (CartPole zoo preset) took 8,798 us with OpenBLAS on 2 threads against 674 us on 1; a PPO
minibatch step of 256 rows (64x64 tanh) 7,771 us against 604 us (1,144-1,668 us for the reference
in torch). Torch alone on 1 thread and OpenBLAS on 2: 1,024 us against 674 us for the DQN step.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys

import gymnasium as gym
import torch

from lucidrl.envs.structured import FlattenedBox
from lucidrl.networks import is_image_space

LARGE_IMAGE_PIXELS = 64 * 64
"""Images of at least this many pixels (height x width) keep torch's own thread count under ``"auto"``."""


def auto_threads(model) -> int:
    """The thread count ``torch_threads="auto"`` gives ``model``: 1 on the CPU, except for large images."""
    if model.device.type != "cpu":
        return torch.get_num_threads()
    space = model.observation_space
    images: list[gym.Space] = [space] if is_image_space(space) else []
    if isinstance(space, FlattenedBox):  # a Dict/Tuple, whose images count (lucidrl.envs.structured)
        images = list(space.image_entries)
    large_image = any(math.prod(sorted(image.shape or ())[1:]) >= LARGE_IMAGE_PIXELS for image in images)
    return torch.get_num_threads() if large_image else 1


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded now, or None without threadpoolctl.

    Looked up afresh at each ``learn`` (~0.4 ms): a library imported after an earlier ``learn`` may bring its
    own BLAS (OpenCV, imported by Stable-Baselines3, loads a second OpenBLAS), which must be held too."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency of lucidrl
        return None
    blas = ThreadpoolController().select(user_api="blas")
    return blas if blas.lib_controllers else None


def numpy_blas_threads(n: int):
    """Context manager: NumPy's BLAS runs on at most ``n`` threads inside it."""
    blas = _blas()
    return contextlib.nullcontext() if blas is None else blas.limit(limits=n)


def threads_for(setting, model) -> int:
    """The thread count of a ``torch_threads`` setting (``"auto"`` or a number) for ``model``."""
    return auto_threads(model) if setting == "auto" else int(setting)


def flushing_denormals() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero now (a denormal times 1 comes out as 0)."""
    return float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0


MALLOC_MMAP_THRESHOLD = 32 << 20
"""Blocks below this many bytes come from glibc's heap instead of fresh ``mmap``s (``tune_malloc``)."""
MALLOC_TRIM_THRESHOLD = 128 << 20
"""glibc returns the top of its heap to the system only when more than this many bytes there are free."""
_malloc_tuned: bool | None = None  # None: not tried yet in this process


def tune_malloc() -> bool:
    """Stop glibc's allocator from handing a training loop's memory back to the system after every step; True when
    it is set (once per process; every later call returns the first answer).

    Why: a fast-backend PPO update on 1,024 CartPole envs allocates and frees a few MiB of NumPy temporaries per
    minibatch (4,096 rows x 64 units = 1 MiB an array). glibc serves blocks of 128 KiB and more with ``mmap``, raises
    that threshold to the largest block freed so far, and gives the top of its heap back to the system once more
    than twice the threshold is free, so each minibatch's temporaries are freed back to the system and the next
    minibatch's pages are faulted in afresh: measured on this project's 2-core machine, 470k page faults and 2.3 s
    for 200k steps of that run, against 5k faults and 1.4 s with the two thresholds set here
    (``MALLOC_MMAP_THRESHOLD``, ``MALLOC_TRIM_THRESHOLD``, through ``mallopt``). Also A2C on 1,024 envs 0.61 ->
    0.45 s for 200k steps, VPG on 64 envs x 256 steps 7.1 -> 5.7 s for 100k, PPO on Pendulum with 256 envs 4.5 ->
    3.3 s for 100k; TRPO, DQN and the zoo presets (small batches) ran the same either way
    (``benchmarks/malloc_faults.py``). The cost: up to ``MALLOC_TRIM_THRESHOLD`` bytes of freed memory stay with the
    process. glibc has no way back to its adaptive thresholds, so this is not undone after ``learn``.

    Skipped where glibc is not the C library (macOS, Windows, musl), where the user set any of glibc's ``MALLOC_*``
    variables (they tuned it themselves), and with ``LUCIDRL_TUNE_MALLOC=0``."""
    global _malloc_tuned
    if _malloc_tuned is not None:
        return _malloc_tuned
    _malloc_tuned = False
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("LUCIDRL_TUNE_MALLOC", "1") == "0"
        or any(k.startswith("MALLOC_") for k in os.environ)
    ):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: musl's mallopt accepts these and does nothing
            return False
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    _malloc_tuned = bool(mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )
    return _malloc_tuned


@contextlib.contextmanager
def hold_threads(setting, model):
    """Inside: torch on the threads ``setting`` asks for (``"auto"`` or a number), NumPy's BLAS on one, and
    denormal floats flushed to zero; yields torch's thread count. All restored after (glibc's allocator, tuned on the
    first call, stays tuned: ``tune_malloc``).

    Why flush denormals (floats below 1.2e-38): a ReLU unit that stops firing gets gradients of exactly 0, and
    Adam's first moment of its weights then decays by β1 = 0.9 each step until it reaches the denormal range,
    where the CPU computes ~10-100x slower. Measured on DQN's CartPole preset (4-256-256-2 ReLU) after 20k
    steps: 53% of Adam's first moments were denormal, and an Adam step took 69 us against 46 us with them
    flushed. What changes numerically is below 1.2e-38 in absolute value."""
    n = threads_for(setting, model)
    tune_malloc()
    before = torch.get_num_threads()
    flushed_before = flushing_denormals()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    try:
        with numpy_blas_threads(1):  # (the module docstring: why one thread, whatever torch's count)
            yield n
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(flushed_before)


def matmul_precision_for(setting: str) -> str:
    """The precision a ``matmul_precision`` setting asks of a CUDA device: "auto" is "tf32"."""
    return "tf32" if setting == "auto" else setting


@contextlib.contextmanager
def hold_matmul_precision(setting: str, device: torch.device):
    """Inside: float32 matrix products on a CUDA ``device`` computed as ``setting`` asks (``matmul_precision``:
    "tf32", "ieee", or "auto" = "tf32"); yields the precision in force ("ieee" elsewhere). Restored after.

    TensorFloat-32 rounds a product's inputs to 10 bits of mantissa on the tensor cores and accumulates in float32:
    the default of JAX (so of PureJaxRL, docs/gpu.md) and TensorFlow on NVIDIA GPUs since Ampere, where PyTorch's
    default is full float32 (see PyTorch's notes, "TensorFloat-32 (TF32) on Ampere (and later) devices"). At
    PureJaxRL's settings with 262,144 envs an update is ~7 TFLOP of 64-wide products (an estimate; the speed-up is
    measured by benchmarks/device/gpu_run.sh on a lent GPU). The
    CPU computes float32 products in full precision whatever the setting, so the reference update on the CPU,
    which the tests compare against, is unchanged. A CUDA graph keeps the precision it was captured with."""
    if torch.device(device).type != "cuda":
        yield "ieee"
        return
    matmul, precision = torch.backends.cuda.matmul, matmul_precision_for(setting)
    # torch >= 2.9's fp32_precision; before it, allow_tf32 (torch refuses to read a mix of the two, so one is used)
    name, value = (
        ("fp32_precision", precision) if hasattr(matmul, "fp32_precision") else ("allow_tf32", precision == "tf32")
    )
    before = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield precision
    finally:
        setattr(matmul, name, before)
