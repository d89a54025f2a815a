"""What ``model.logger.record`` sends to TensorBoard besides numbers: text, histograms, figures, images, videos
and hyperparameters, as Stable-Baselines3's logger does (its "Logging More Values" recipes).

In a callback (``self.logger`` is ``model.logger``)::

    from lucidrl.log_media import Figure, HParam, Image, Video

    self.logger.record("notes/text", "any text")                        # TensorBoard's Text tab
    self.logger.record("weights/layer0", self.model.policy.actor[0].weight)  # a tensor or array: a histogram
    self.logger.record("plots/values", Figure(fig, close=True))         # a matplotlib figure (Images tab)
    self.logger.record("frames/last", Image(frame, "HWC"))              # an image (uint8, or float in [0, 1])
    self.logger.record("episodes/one", Video(frames, fps=30))           # frames [N, T, C, H, W]: an animated GIF
    self.logger.record("hparams", HParam({"gamma": 0.99}, {"rollout/episode_return": 0}))

They are written at the step of the next row lucidrl logs (one per update), to the run's TensorBoard events only
(metrics.csv holds numbers; ``exclude`` as in SB3 takes ``"tensorboard"`` or ``"csv"`` away). A run without
TensorBoard events (no ``run_dir``/``tensorboard_log``, or ``tensorboard=False``) leaves them out and says so once
per key. SB3's own classes (``stable_baselines3.common.logger.Figure``, ...) are taken as well, so a callback written
for SB3 works unchanged. Videos are encoded as animated GIFs with Pillow (TensorBoard shows them in the Images tab),
so unlike torch's ``add_video`` they need no moviepy.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from lucidrl.errors import ConfigError

__all__ = ["Figure", "HParam", "Image", "TensorBoardOutputFormat", "Video"]


def _array(x: Any, what: str) -> np.ndarray:
    """``x`` (a tensor on any device, an array, nested lists) as a NumPy array; a ConfigError names ``what``."""
    try:
        if callable(getattr(x, "detach", None)):  # torch: off the graph and the device
            x = x.detach().cpu()
            try:
                x = x.numpy()
            except TypeError:  # bfloat16, float8: NumPy has no such type
                x = x.float().numpy()
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{what}: not an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise ConfigError(f"{what}: needs numbers, got an array of dtype {a.dtype}")
    return a


def number(value: Any) -> float | None:
    """``value`` as a float where it is one number: a Python or NumPy number, a one-element array or tensor."""
    if isinstance(value, (bool, int, float, np.number)):
        return float(value)
    size = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)  # torch; NumPy
    if size == 1 and callable(getattr(value, "item", None)):
        item = value.item()
        if isinstance(item, (bool, int, float)):
            return float(item)
    return None


def _uint8(a: np.ndarray) -> np.ndarray:
    """Pixels as uint8: uint8 as they are; other numbers as intensities in [0, 1] (clipped), as TensorBoard reads
    them."""
    if a.dtype == np.uint8:
        return a
    return (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class Figure:
    """A matplotlib figure, drawn into TensorBoard's Images tab. ``close``: close it once written (frees its memory;
    matplotlib warns past 20 open figures)."""

    def __init__(self, figure: Any, close: bool = True):
        if not (callable(getattr(figure, "savefig", None)) and hasattr(figure, "canvas")):
            raise ConfigError(
                "Figure needs a matplotlib figure (plt.figure(), or fig from plt.subplots()), "
                f"got {type(figure).__name__}"
            )
        self.figure, self.close = figure, bool(close)


class Image:
    """An image: an array or tensor laid out as ``dataformats`` says (``"HWC"``, ``"CHW"``, ``"HW"``; C is 1, 3 or 4),
    uint8, or numbers in [0, 1]."""

    def __init__(self, image: Any, dataformats: str):
        if image is None or (isinstance(image, (tuple, list)) and any(x is None for x in image)):
            raise ConfigError(
                "Image got None: an env renders nothing unless it was made with a render_mode; build it with "
                "env_kwargs={'render_mode': 'rgb_array'} (or gym.make(id, render_mode='rgb_array')); a vector env's "
                "render() gives one frame per copy: take [0]"
            )
        if not isinstance(dataformats, str) or sorted(dataformats) not in (sorted("HW"), sorted("CHW")):
            raise ConfigError(
                f"Image's dataformats must be 'HWC', 'CHW', 'HW' or another order of those letters, got {dataformats!r}"
            )
        a = _array(image, "Image")
        if a.ndim != len(dataformats):
            raise ConfigError(f"Image: an array of shape {a.shape} is not laid out as {dataformats!r}")
        if "C" in dataformats and a.shape[dataformats.index("C")] not in (1, 3, 4):
            channels = a.shape[dataformats.index("C")]
            raise ConfigError(f"Image: {channels} channels (C in {dataformats!r}); give 1, 3 or 4")
        self.image, self.dataformats = image, dataformats

    def hwc(self) -> np.ndarray:
        """The image as uint8 [H, W, C], C = 1, 3 or 4."""
        a = _array(self.image, "Image")
        if "C" not in self.dataformats:
            a, order = a[..., None], self.dataformats + "C"
        else:
            order = self.dataformats
        return _uint8(np.transpose(a, [order.index(c) for c in "HWC"]))


class Video:
    """Frames ``[N, T, C, H, W]`` (N videos of T frames, C = 1 or 3; uint8, or numbers in [0, 1]), as SB3's and
    torch's ``add_video`` take them, shown at ``fps`` frames a second; the N videos are shown side by side."""

    def __init__(self, frames: Any, fps: float):
        a = _array(frames, "Video")
        if a.ndim != 5 or a.shape[2] not in (1, 3) or 0 in a.shape:
            raise ConfigError(
                f"Video needs frames of shape [N, T, C, H, W] with C = 1 or 3 (one video: frames[None]), got {a.shape}"
            )
        if not (isinstance(fps, (int, float, np.number)) and not isinstance(fps, bool) and fps > 0):
            raise ConfigError(f"Video's fps must be a number > 0, got {fps!r}")
        self.frames, self.fps = frames, float(fps)

    def gif(self) -> tuple[bytes, int, int]:
        """The video as an animated GIF: (its bytes, height, width)."""
        from PIL import Image as PILImage

        a = _uint8(_array(self.frames, "Video"))  # [N, T, C, H, W]
        n, t, c, h, w = a.shape
        side = a.transpose(1, 3, 0, 4, 2).reshape(t, h, n * w, c)  # [T, H, N*W, C]: the videos side by side
        if c == 1:
            side = np.repeat(side, 3, axis=3)
        images = [PILImage.fromarray(f) for f in side]
        buf = io.BytesIO()
        ms = int(1000 / self.fps)
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=ms, loop=0)
        return buf.getvalue(), h, n * w


class HParam:
    """Hyperparameters for TensorBoard's HParams tab: ``hparam_dict`` (name: value; a bool, a number, text or None
    is kept as it is, anything else, such as a schedule, as its text) and ``metric_dict`` (tags of scalars to show
    beside them, e.g. ``rollout/episode_return``: at least one, each with a starting number)."""

    def __init__(self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, float]):
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise ConfigError("HParam takes two dicts: HParam(hparam_dict, metric_dict)")
        if not metric_dict:
            raise ConfigError(
                "HParam's metric_dict is empty; TensorBoard's HParams tab needs at least one metric, e.g. "
                "{'rollout/episode_return': 0}"
            )
        metrics = {}
        for k, v in metric_dict.items():
            metrics[k] = None if isinstance(v, bool) else number(v)
            if metrics[k] is None:
                raise ConfigError(f"HParam: the metric {k!r} is a {type(v).__name__}; give a number")
        self.hparam_dict = {k: _hparam(v) for k, v in hparam_dict.items()}
        self.metric_dict = metrics


def _hparam(v: Any) -> bool | str | float | int | None:
    """A hyperparameter as TensorBoard stores one: None, a bool, a number or text (a schedule, a list: its text)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    x = number(v)  # a NumPy number, a one-element tensor
    return x if x is not None else str(v)


_SB3 = "stable_baselines3.common.logger"


def tensorboard_value(value: Any) -> tuple[str, Any] | None:
    """What TensorBoard makes of a recorded value that is not one number: ``("text", str)``, ``("histogram",
    array)``, ``("figure" | "image" | "video" | "hparam", the object)``; None: nothing (a dict, a list, ...).
    SB3's Figure / Image / Video / HParam become lucidrl's."""
    if isinstance(value, str):
        return "text", value
    if isinstance(value, Figure):
        return "figure", value
    if isinstance(value, Image):
        return "image", value
    if isinstance(value, Video):
        return "video", value
    if isinstance(value, HParam):
        return "hparam", value
    if type(value).__module__ == _SB3:  # SB3's classes, by their fields (no import of SB3)
        name = type(value).__name__
        if name == "Figure":
            return "figure", Figure(value.figure, value.close)
        if name == "Image":
            return "image", Image(value.image, value.dataformats)
        if name == "Video":
            return "video", Video(value.frames, value.fps)
        if name == "HParam":
            return "hparam", HParam(value.hparam_dict, value.metric_dict)
    if isinstance(value, np.ndarray) or callable(getattr(value, "detach", None)):  # an array or a tensor
        a = _array(value, "a histogram") if getattr(value, "dtype", None) is not None else None
        if a is not None:
            return "histogram", a
    return None


def discard(value: Any) -> None:
    """A recorded value that will not be written (replaced by a later ``record`` of its key before the row, or
    left out): a figure with ``close=True`` is closed all the same, as writing it would have."""
    if isinstance(value, Figure) or (type(value).__module__ == _SB3 and type(value).__name__ == "Figure"):
        if getattr(value, "close", False) and "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(value.figure)


def write(writer: Any, key: str, kind: str, value: Any, step: int) -> None:
    """Write one value of ``tensorboard_value``'s kind to a ``SummaryWriter`` at ``step``."""
    if kind == "text":
        writer.add_text(key, value, step)
    elif kind == "histogram":
        finite = value[np.isfinite(value)].astype(np.float64)
        if finite.size:  # (NaN and inf have no bin)
            writer.add_histogram(key, finite, step)
    elif kind == "figure":
        writer.add_figure(key, value.figure, step, close=value.close)
    elif kind == "image":
        writer.add_image(key, value.hwc(), step, dataformats="HWC")
    elif kind == "video":
        from tensorboard.compat.proto.summary_pb2 import Summary

        gif, h, w = value.gif()
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif)
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=key, image=image)]), step)
    elif kind == "hparam":
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(value.hparam_dict, value.metric_dict):  # experiment, session start and end
            writer.file_writer.add_summary(summary)  # (in the run's own events file, as SB3 writes them)
    else:
        raise ValueError(f"unknown kind {kind!r}")


class TensorBoardOutputFormat:
    """``model.logger.output_formats``' TensorBoard entry during ``learn``: ``writer`` is the run's
    ``torch.utils.tensorboard.SummaryWriter``, for what ``record`` does not cover (SB3's "Directly Accessing The
    Summary Writer"). Where ``stable_baselines3`` is imported, the entry is also an instance of SB3's class of
    this name, so ``isinstance(f, stable_baselines3.common.logger.TensorBoardOutputFormat)`` finds it. The writer
    belongs to the run: lucidrl closes it when ``learn`` returns, and ``close`` here does nothing."""

    def __init__(self, writer: Any):
        self.writer = writer
        self._is_closed = False

    def write(self, key_values: Mapping[str, Any], key_excluded: Mapping[str, Any], step: int = 0) -> None:
        """SB3's ``KVWriter.write``: numbers as scalars, the rest as ``tensorboard_value`` says."""
        for key, value in key_values.items():
            if "tensorboard" in (key_excluded.get(key) or ()):
                continue
            x = number(value)
            if x is not None:
                self.writer.add_scalar(key, x, step)
            elif (found := tensorboard_value(value)) is not None:
                write(self.writer, key, *found, step)
        self.writer.flush()

    def close(self) -> None:
        pass


_SB3_TWINS: dict[type, type] = {}


def output_format(writer: Any) -> TensorBoardOutputFormat:
    """A TensorBoardOutputFormat for ``writer``, also an instance of SB3's class where SB3's logger is imported."""
    theirs = getattr(sys.modules.get(_SB3), "TensorBoardOutputFormat", None)
    if not isinstance(theirs, type):
        return TensorBoardOutputFormat(writer)
    twin = _SB3_TWINS.get(theirs)
    if twin is None:  # lucidrl's methods first; SB3's __init__ (which opens a writer of its own) is never called
        twin = _SB3_TWINS[theirs] = type("TensorBoardOutputFormat", (TensorBoardOutputFormat, theirs), {})
    fmt: TensorBoardOutputFormat = object.__new__(twin)
    TensorBoardOutputFormat.__init__(fmt, writer)
    return fmt
