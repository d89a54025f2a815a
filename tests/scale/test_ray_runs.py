"""`lucidrl compare --backend ray`: every run a Ray task, the same files and the same weights as locally.

The comparisons run on the session's local 2-CPU Ray instance (the ``ray_local`` fixture), which
``compare`` finds initialised and leaves running; the test of a Ray instance started and shut down by
``compare`` itself runs in a subprocess so that it cannot touch the fixture's session.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lucidrl.compare import Job, Variant, compare, compare_variants, run_job
from lucidrl.distributed import runs
from lucidrl.errors import ConfigError, LucidRLError

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(seeds=[0], timesteps=1024, eval_episodes=2)
PPO_TINY = {"n_steps": 128, "n_envs": 2, "n_epochs": 2, "batch_size": 64}


def files_under(path: Path) -> set[str]:
    """Relative paths of the files under ``path``, the TensorBoard event file's name (time and pid) as a pattern."""
    names = set()
    for p in path.rglob("*"):
        if p.is_file():
            rel = str(p.relative_to(path))
            names.add("runs/ppo-s0/events.out.tfevents.*" if "tfevents" in rel else rel)
    return names


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model" / "weights.safetensors"), load_file(b / "model" / "weights.safetensors")
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_ray_backend_writes_the_same_run_bit_for_bit(ray_local, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    compare(["ppo"], "CartPole-v1", out=local, n_jobs=1, log=lambda s: None, **TINY)
    lines = []
    paths = compare(["ppo"], "CartPole-v1", out=remote, backend="ray", log=lines.append, **TINY)
    assert ray_local.is_initialized()  # the fixture's session was used and left running
    assert any("on the running Ray session" in ln for ln in lines)
    assert any(ln.startswith("  ppo seed 0: eval") for ln in lines)  # progress, as the local path prints it
    assert files_under(local) == files_under(remote)
    for name in ("learning_curves.png", "final_returns.png", "results.md", "results.json"):
        assert paths[Path(name).stem if name != "results.md" else "table"].name == name
    assert not (remote / runs.MARKER).exists()  # the marker is removed
    assert_same_weights(local / "runs" / "ppo-s0", remote / "runs" / "ppo-s0")
    r_local, r_ray = (json.loads((d / "runs" / "ppo-s0" / "result.json").read_text()) for d in (local, remote))
    assert r_local["eval_mean"] == r_ray["eval_mean"] and r_local["num_timesteps"] == r_ray["num_timesteps"]

    # a finished run is reused, not trained again, on Ray as locally
    lines.clear()
    before = (remote / "runs" / "ppo-s0" / "result.json").read_text()
    compare(["ppo"], "CartPole-v1", out=remote, backend="ray", log=lines.append, **TINY)
    assert any("reusing" in ln for ln in lines) and not any("training" in ln for ln in lines)
    assert (remote / "runs" / "ppo-s0" / "result.json").read_text() == before


def test_a_run_on_a_node_without_the_drivers_files_comes_back_as_a_tar(tmp_path):
    """The task body as it runs on a node that cannot read OUT: it trains in a temporary directory and
    returns the files, which unpack into the same run directory, bit for bit."""
    threads = torch.get_num_threads()
    job = Job("ppo", "CartPole-v1", 0, 1024, str(tmp_path / "direct"), 2, tuple(sorted(PPO_TINY.items())))
    try:
        direct = run_job(job)
        result, files = runs.run_task(run_job, job, str(tmp_path / "no-marker"), "token", [])
    finally:
        torch.set_num_threads(threads)
    assert files is not None and 10_000 < len(files) < 1_000_000
    assert not (tmp_path / "no-marker").exists()
    runs.unpack_dir(files, tmp_path / "unpacked")
    assert files_under(tmp_path / "direct") == files_under(tmp_path / "unpacked")
    assert_same_weights(tmp_path / "direct", tmp_path / "unpacked")
    assert {k: v for k, v in result.items() if k not in ("train_s", "finished")} == {
        k: v for k, v in direct.items() if k not in ("train_s", "finished")
    }


def test_failed_runs_are_named_and_the_finished_ones_kept(ray_local, tmp_path, monkeypatch):
    """A Python error in one run and a worker killed in another: one LucidRLError naming both; the good run stays."""
    (tmp_path / "bad_wrappers.py").write_text(
        "import os\ndef boom(env):\n    raise RuntimeError('wrapper exploded')\ndef die(env):\n    os._exit(3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers get the driver's import path
    variants = [
        Variant("ok", "ppo", PPO_TINY),
        Variant("raises", "ppo", PPO_TINY, wrapper="bad_wrappers:boom"),
        Variant("dies", "ppo", PPO_TINY, wrapper="bad_wrappers:die"),
    ]
    out = tmp_path / "out"
    with pytest.raises(LucidRLError) as info:
        compare_variants(variants, "CartPole-v1", out=out, backend="ray", log=lambda s: None, **TINY)
    msg = str(info.value)
    assert "2 of 3 runs failed" in msg
    assert "raises seed 0 failed in" in msg and "wrapper exploded" in msg
    assert "dies seed 0: the Ray worker running it died" in msg
    assert "Traceback" not in msg
    assert (out / "runs" / "ok-s0" / "result.json").is_file()
    assert not (out / "runs" / "raises-s0" / "result.json").exists()


def run_python(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter, where Ray is not initialised (never the fixture's session)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_an_address_where_nothing_listens_fails_fast(tmp_path):
    """A ConfigError within seconds (Ray itself retries such an address for minutes); one error line from the CLI."""
    script = (
        "import time, ray\n"
        "from lucidrl import cli\n"
        "from lucidrl.compare import compare\n"
        "from lucidrl.errors import ConfigError\n"
        "start = time.monotonic()\n"
        "try:\n"
        f"    compare(['ppo'], 'CartPole-v1', seeds=1, timesteps=100, out={str(tmp_path / 'cmp')!r}, backend='ray',"
        " address='127.0.0.1:1')\n"
        "except ConfigError as e:\n"
        "    print('CONFIGERROR', e)\n"
        "print('SECONDS', time.monotonic() - start, 'INITIALIZED', ray.is_initialized())\n"
        f"rc = cli.main(['compare', 'ppo', '--env', 'CartPole-v1', '--seeds', '1', '--timesteps', '100', '--out',"
        f" {str(tmp_path)!r}, '--backend', 'ray', '--address', 'ray://127.0.0.1:1'])\n"
        "print('RC', rc)\n"
    )
    proc = run_python(script)
    out = proc.stdout
    assert "CONFIGERROR could not connect to the Ray cluster at '127.0.0.1:1': nothing answers there" in out, (
        out[-2000:] + proc.stderr[-2000:]
    )
    seconds = float(out.split("SECONDS ")[1].split()[0])
    assert seconds < 10 and "INITIALIZED False" in out
    assert "RC 2" in out
    assert "lucidrl: error: could not connect to the Ray cluster at 'ray://127.0.0.1:1'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / runs.MARKER).exists()
    assert not (tmp_path / "cmp").exists()  # the address is checked before the output directory is made


def test_ray_options_without_the_ray_backend_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="backend='ray'"):
        compare(["ppo"], "CartPole-v1", out=tmp_path, address="auto", **TINY)
    with pytest.raises(ConfigError, match="'local' or 'ray'"):
        compare(["ppo"], "CartPole-v1", out=tmp_path, backend="dask", **TINY)
    with pytest.raises(ConfigError, match="cpus_per_run"):
        runs.run_on_ray(run_job, [], tmp_path, lambda j, r: None, cpus_per_run=0)


def test_without_an_address_the_cli_starts_a_local_ray_and_shuts_it_down(tmp_path):
    """In a fresh interpreter (never the fixture's session): the CLI's code path, then Ray is not initialised."""
    script = (
        "import ray\n"
        "from lucidrl import cli\n"
        f"rc = cli.main(['compare', 'ppo', '--env', 'CartPole-v1', '--seeds', '1', '--timesteps', '500',"
        f" '--eval-episodes', '1', '--out', {str(tmp_path / 'out')!r}, '--backend', 'ray'])\n"
        "print('RC', rc, 'INITIALIZED', ray.is_initialized())\n"
    )
    proc = run_python(script)
    assert "RC 0 INITIALIZED False" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "on a local Ray instance (started here)" in proc.stdout
    assert (tmp_path / "out" / "runs" / "ppo-s0" / "model" / "weights.safetensors").is_file()
    assert (tmp_path / "out" / "results.md").is_file()


def test_a_relative_out_reaches_the_task_as_the_drivers_absolute_path(ray_local, tmp_path, monkeypatch):
    """A Ray worker's working directory is the one its node's Ray started in (on a cluster: wherever `ray start`
    ran), not the driver's: a relative OUT used to put the run directories there, not under the driver's OUT."""

    def where(job):  # pickled by value into the task; writes nothing
        return {"run_dir": os.path.abspath(job.run_dir), "cwd": os.getcwd()}

    monkeypatch.chdir(tmp_path)  # the driver's directory is no longer the one the fixture's Ray started in
    job = Job("ppo", "CartPole-v1", 0, 100, os.path.join("out", "runs", "ppo-s0"), 1, ())
    seen = []
    runs.run_on_ray(where, [job], "out", lambda j, r: seen.append((j, r)), log=lambda s: None)
    [(returned_job, result)] = seen
    assert result["cwd"] != str(tmp_path)  # the test means something: the task ran elsewhere
    assert result["run_dir"] == str(tmp_path / "out" / "runs" / "ppo-s0")
    assert returned_job is job  # the caller's job, as it gave it


def test_cpus_per_run_beyond_a_local_instance_is_refused_instead_of_waiting_forever(tmp_path):
    """A local instance started here never grows: a run needing more CPUs than it has would wait forever."""
    script = (
        "from lucidrl.compare import compare\n"
        "from lucidrl.errors import ConfigError\n"
        "try:\n"
        f"    compare(['ppo'], 'CartPole-v1', seeds=1, timesteps=100, out={str(tmp_path)!r}, backend='ray',"
        " cpus_per_run=64, log=lambda s: None)\n"
        "except ConfigError as e:\n"
        "    print('CONFIGERROR', e)\n"
    )
    proc = run_python(script, timeout=60)
    assert "CONFIGERROR cpus_per_run=64 is more than the" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "lower --cpus-per-run" in proc.stdout


def test_an_env_id_the_script_registered_trains_on_ray(ray_local, tmp_path):
    """The Ray workers never ran the script's gym.register: the registration travels with the task (it used to
    fail there with 'Unknown environment id', where the local backend's processes re-run the script's top level)."""
    import gymnasium as gym
    from gymnasium.envs.classic_control import CartPoleEnv

    gym.register("ScaleRunsCart-v0", entry_point=lambda **kw: CartPoleEnv(**kw), max_episode_steps=50)
    try:
        compare(["ppo"], "ScaleRunsCart-v0", out=tmp_path, backend="ray", log=lambda s: None, **TINY)
    finally:
        del gym.registry["ScaleRunsCart-v0"]
    result = json.loads((tmp_path / "runs" / "ppo-s0" / "result.json").read_text())
    assert result["num_timesteps"] >= 1024 and result["eval_mean"] <= 50  # its own time limit, not CartPole-v1's


def test_a_stale_ray_address_variable_is_named_at_once_not_waited_on():
    """ray.init reads RAY_ADDRESS where no address is given: a value where nothing listens used to make compare and
    tune wait for minutes, and rollout workers fail on num_cpus; now it is checked as a given address."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "disabled"}
    script = "from lucidrl.distributed import ray_session\nwith ray_session(None):\n    pass\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "RAY_ADDRESS environment variable" in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr


def test_a3c_with_an_address_where_nothing_listens_leaves_no_run_directory(tmp_path):
    """The address is checked before the run directory is written: a retry into the same directory is a new run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "a3c"
    script = (
        "import lucidrl\n"
        f"lucidrl.A3C('CartPole-v1', address='127.0.0.1:{port}', run_dir={str(run)!r}, verbose=0).learn(100)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and f"could not connect to the Ray cluster at '127.0.0.1:{port}'" in proc.stderr
    assert not run.exists()
