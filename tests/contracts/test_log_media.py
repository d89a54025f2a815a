"""model.logger.record beyond numbers (lucidrl.log_media): text, histograms, figures, images, videos and
hyperparameters reach the run's TensorBoard events, SB3's recipes ("Logging More Values") run unchanged, ``exclude``
keeps values out of the formats it names, and bad values get errors that name them."""

from __future__ import annotations

import glob
import io

import matplotlib
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl import ConfigError
from lucidrl.callbacks import BaseCallback
from lucidrl.log_media import Figure, HParam, Image, Video

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMALL = dict(n_envs=2, n_steps=16, batch_size=16, n_epochs=1, verbose=0, seed=0, preset=False)


def events(run_dir) -> dict[str, list]:
    """tag -> [(step, value proto)] of every summary in the run's event files, as written (not migrated)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    out: dict[str, list] = {}
    for f in sorted(glob.glob(f"{run_dir}/events.out.tfevents*")):
        for record in RawEventFileLoader(f).Load():
            e = Event.FromString(record)
            for v in e.summary.value:
                out.setdefault(v.tag, []).append((e.step, v))
    return out


def test_sb3s_logging_recipes_run_unchanged_and_reach_tensorboard(tmp_path):
    sb3_logger = pytest.importorskip("stable_baselines3.common.logger")

    class Recipes(BaseCallback):  # SB3's docs: hparams, figure, image, video, direct access to the writer
        def _on_training_start(self) -> None:
            formats = self.logger.output_formats
            self.tb = next(f for f in formats if isinstance(f, sb3_logger.TensorBoardOutputFormat))
            hparams = {"algorithm": type(self.model).__name__, "learning rate": self.model.learning_rate,
                       "gamma": self.model.gamma}  # fmt: skip
            metrics = {"rollout/episode_return": 0, "loss/value": 0.0}
            self.logger.record("hparams", sb3_logger.HParam(hparams, metrics), exclude=("stdout", "log", "json", "csv"))

        def _on_step(self) -> bool:
            figure = plt.figure()
            figure.add_subplot().plot(np.random.random(3))
            self.logger.record("trajectory/figure", sb3_logger.Figure(figure, close=True), exclude=("stdout", "csv"))
            plt.close()
            self.logger.record("trajectory/image", sb3_logger.Image(torch.rand(3, 8, 8), "CHW"))
            frames = torch.randint(0, 255, (1, 4, 3, 8, 8), dtype=torch.uint8)
            self.logger.record("trajectory/video", sb3_logger.Video(frames, fps=10))
            self.logger.record("weights/first", self.model.policy.actor[0].weight)  # a histogram
            self.logger.record("notes/text", "hello")
            self.tb.writer.add_text("direct_access", "this is a value", self.num_timesteps)
            return True

    model = lucidrl.PPO("CartPole-v1", **SMALL, learning_rate="lin_0.001", run_dir=tmp_path)
    model.learn(64, callback=Recipes())
    ev = events(tmp_path)
    tags = ["trajectory/figure", "trajectory/image", "trajectory/video", "weights/first", "notes/text/text_summary"]
    for tag in tags:
        assert [step for step, _ in ev[tag]] == [32, 64], tag  # one per update, at the row's step
    assert ev["trajectory/figure"][0][1].image.encoded_image_string.startswith(b"\x89PNG")
    assert ev["trajectory/video"][0][1].image.encoded_image_string.startswith(b"GIF8")
    assert ev["weights/first"][0][1].histo.num == model.policy.actor[0].weight.numel()
    assert "direct_access/text_summary" in ev
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(ev)
    start = ev["_hparams_/session_start_info"][0][1].metadata.plugin_data.content
    assert b"lin_0.001" in start and b"algorithm" in start  # a schedule is kept as its text
    assert model.logger.output_formats == []  # after learn: no writer to hand out
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "trajectory" not in header and "notes" not in header and "weights" not in header


def test_lucidrls_video_is_a_gif_of_the_frames_side_by_side():
    frames = np.zeros((2, 3, 1, 4, 5), np.uint8)  # 2 videos of 3 grey frames, 4x5
    frames[0, :, 0] = np.array([0, 128, 255])[:, None, None]
    frames[1, :, 0] = 60
    gif, h, w = Video(frames, fps=20).gif()
    from PIL import Image as PILImage

    im = PILImage.open(io.BytesIO(gif))
    assert (im.n_frames, im.size, h, w) == (3, (10, 4), 4, 10)
    for t, level in enumerate([0, 128, 255]):
        im.seek(t)
        pixels = np.asarray(im.convert("RGB"))
        assert (pixels[:, :5] == level).all() and (pixels[:, 5:] == 60).all()
        assert im.info["duration"] == 50
    floats = Video(torch.full((1, 2, 3, 2, 2), 0.5), fps=1).gif()[0]  # floats in [0, 1]: x255
    assert np.asarray(PILImage.open(io.BytesIO(floats)).convert("RGB"))[0, 0].tolist() == [128, 128, 128]


def test_images_in_any_layout_become_the_same_pixels():
    hwc = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert (Image(hwc.transpose(2, 0, 1), "CHW").hwc() == hwc).all()
    assert (Image(torch.from_numpy(hwc), "HWC").hwc() == hwc).all()
    assert (Image(hwc[..., 0], "HW").hwc()[..., 0] == hwc[..., 0]).all()
    assert Image(np.full((2, 2), 2.0), "HW").hwc().max() == 255  # floats clip to [0, 1]


def test_exclude_keeps_a_number_out_of_the_formats_it_names(tmp_path):
    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("x/tb_only", 1.0, exclude="csv")
            self.logger.record("x/csv_only", 2.0, exclude=("tensorboard",))
            self.logger.record("x/both", 3.0)
            return True

    lucidrl.PPO("CartPole-v1", **SMALL, run_dir=tmp_path).learn(32, callback=Record())
    rows = lucidrl.logging.read_metrics(tmp_path / "metrics.csv")
    assert rows[0]["x/csv_only"] == 2.0 and rows[0]["x/both"] == 3.0 and "x/tb_only" not in rows[0]
    ev = events(tmp_path)
    assert ev["x/tb_only"][0][1].simple_value == 1.0 and "x/both" in ev and "x/csv_only" not in ev


def test_without_tensorboard_media_are_left_out_once_with_the_reason(tmp_path, capsys):
    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("plots/f", Figure(plt.figure(), close=True))
            self.logger.info("from the callback", 1)
            return True

    plt.close("all")
    lucidrl.PPO("CartPole-v1", **{**SMALL, "verbose": 1}).learn(64, callback=Record())
    out = capsys.readouterr().out
    assert out.count("'plots/f', ...): a Figure is left out: a figure goes to TensorBoard and this run writes no") == 1
    assert "from the callback 1" in out
    assert plt.get_fignums() == []  # close=True: closed though never written (64 were made, one per step)


def test_a_histogram_keeps_the_finite_values(tmp_path):
    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("h", np.array([1.0, np.nan, 2.0, np.inf, 3.0]))
            return True

    lucidrl.PPO("CartPole-v1", **SMALL, run_dir=tmp_path).learn(32, callback=Record())
    histo = events(tmp_path)["h"][0][1].histo
    assert (histo.num, histo.min, histo.max, histo.sum) == (3, 1.0, 3.0, 6.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Figure("not a figure"), "Figure needs a matplotlib figure"),
        (lambda: Image(np.zeros((5, 4, 3)), "CHW"), "Image: 5 channels .C in 'CHW'.; give 1, 3 or 4"),
        (lambda: Image(np.zeros((4, 4)), "HWC"), r"shape \(4, 4\) is not laid out as 'HWC'"),
        (lambda: Image(np.zeros((4, 4)), "XY"), "dataformats must be 'HWC', 'CHW', 'HW'"),
        (lambda: Image(np.array(["a"]), "HW"), "needs numbers"),
        (lambda: Image(None, "HWC"), r"Image got None: .*render_mode.*take \[0\]"),
        (lambda: Image((None, None), "HWC"), "Image got None"),
        (lambda: Video(np.zeros((3, 3, 8, 8)), fps=10), r"\[N, T, C, H, W\] .* got \(3, 3, 8, 8\)"),
        (lambda: Video(np.zeros((1, 3, 3, 8, 8)), fps=0), "fps must be a number > 0"),
        (lambda: HParam({"lr": 0.1}, {}), "metric_dict is empty"),
        (lambda: HParam({"lr": 0.1}, {"r": "high"}), "the metric 'r' is a str; give a number"),
    ],
)
def test_bad_values_are_refused_with_what_is_wrong(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_bad_sb3_value_names_its_key_when_the_row_is_written(tmp_path):
    sb3_logger = pytest.importorskip("stable_baselines3.common.logger")

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("frames/bad", sb3_logger.Image(np.zeros((5, 5, 5)), "HWC"))
            return True

    with pytest.raises(ConfigError, match=r"record\('frames/bad', ...\): Image: 5 channels"):
        lucidrl.PPO("CartPole-v1", **SMALL, run_dir=tmp_path).learn(32, callback=Record())


def test_the_output_format_writes_as_sb3s_and_is_sb3s_class_only_where_sb3_is_imported(tmp_path, monkeypatch):
    import sys

    from torch.utils.tensorboard import SummaryWriter

    from lucidrl.log_media import TensorBoardOutputFormat, output_format

    writer = SummaryWriter(str(tmp_path))
    monkeypatch.delitem(sys.modules, "stable_baselines3.common.logger", raising=False)
    plain = output_format(writer)
    assert type(plain) is TensorBoardOutputFormat and plain.writer is writer
    sb3_logger = pytest.importorskip("stable_baselines3.common.logger")
    twin = output_format(writer)
    assert isinstance(twin, sb3_logger.TensorBoardOutputFormat) and isinstance(twin, TensorBoardOutputFormat)
    twin.write({"a": 1.5, "b": "text", "c": np.arange(3.0)}, {"a": None, "b": None, "c": ("tensorboard",)}, step=5)
    twin.close()  # the run's writer stays open
    writer.add_scalar("after", 1.0, 6)
    writer.close()
    ev = events(tmp_path)
    assert ev["a"] == [(5, ev["a"][0][1])] and ev["a"][0][1].simple_value == 1.5
    assert "b/text_summary" in ev and "c" not in ev and "after" in ev


@pytest.mark.parametrize("fmt", ["tensorboard", "csv"])
def test_the_step_stays_in_every_row_whatever_a_callback_excludes(tmp_path, fmt):
    class Record(BaseCallback):  # as SB3's own loop records it
        def _on_step(self) -> bool:
            self.logger.record("time/total_timesteps", self.num_timesteps, exclude=fmt)
            return True

    lucidrl.PPO("CartPole-v1", **SMALL, run_dir=tmp_path).learn(64, callback=Record())
    assert [row["time/total_timesteps"] for row in lucidrl.logging.read_metrics(tmp_path / "metrics.csv")] == [32, 64]
    assert [step for step, _ in events(tmp_path)["loss/value"]] == [32, 64]


def test_a_bfloat16_tensor_is_a_histogram(tmp_path):
    class Record(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("h", torch.arange(4, dtype=torch.bfloat16))
            return True

    lucidrl.PPO("CartPole-v1", **SMALL, run_dir=tmp_path).learn(32, callback=Record())
    histo = events(tmp_path)["h"][0][1].histo
    assert (histo.num, histo.max, histo.sum) == (4, 3.0, 6.0)


def test_logger_log_levels_and_verbose_as_sb3s(capsys):
    model = lucidrl.PPO("CartPole-v1", **SMALL)  # verbose=0
    model.logger.info("quiet")
    model.verbose = 1
    model.logger.info("shown", 1)
    model.logger.log("also shown", level=30)
    model.logger.log("hidden", level=10)
    model.logger.debug("hidden too")
    model.logger.warn("careful")
    out = capsys.readouterr().out
    assert out.splitlines() == ["shown 1", "also shown", "warning: careful"]
