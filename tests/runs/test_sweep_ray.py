"""A sweep on Ray (``runs.cluster.RayExecutor``), on real Ray: the same numbers as the local
pool bit for bit, a killed worker retried from its last epoch, resuming across executors,
clusters of ``ray start`` nodes on this machine, and the errors of bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray")

import nesterovnode  # noqa: E402
from helpers import without_timings  # noqa: E402
from nesterovnode.runs import ProcessPool, TrainConfig, compare, train  # noqa: E402
from nesterovnode.runs.checkpoint import (  # noqa: E402
    FEATURES,
    RUN_FILES,
    read_checkpoint,
    read_log,
)
from nesterovnode.runs.cluster import RayExecutor  # noqa: E402

#: the worktree's (or installation's) package folder: Ray nodes started here import it
SOURCES = str(Path(nesterovnode.__file__).resolve().parents[1])
STARTED = re.compile(r"(\w+) seed (\d+): on .*, pid (\d+) \(attempt (\d+)\)")
#: a few epochs' run folder: every run file but the feature snapshots (the point cloud
#: keeps them from epoch 100 on)
FEW_EPOCHS_FILES = sorted(set(RUN_FILES) - {FEATURES})


def quick(epochs=3, **kw):
    """A point-cloud run of a few epochs, eager steps (compilation is not the point)."""
    return TrainConfig(task="pointcloud", epochs=epochs, compile="off", **kw)


def numbers(results: dict) -> dict:
    """Per (model, seed): the losses, accuracies and NFE of every epoch, as saved."""
    return {
        (m, r["seed"]): [
            (e["epoch"], e["loss"], e["accuracy"], e["nfe_forward"], e["nfe_backward"])
            for e in r["epochs"]
        ]
        for m, entry in results["models"].items()
        for r in entry["runs"]
    }


def saved(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def embedded():
    """An embedded local Ray of 2 CPUs (one run per CPU, as the local pool on 2 cores)."""
    with RayExecutor(num_cpus=2, threads=1, progress=False) as executor:
        yield executor


def test_a_comparison_on_embedded_ray_equals_the_local_pool_bit_for_bit(tmp_path, embedded):
    kw = dict(models=["node", "hbnode"], seeds=2, progress=False)
    local = compare(quick(), out=tmp_path / "local", executor=ProcessPool(2, False), **kw)
    messages = []
    on_ray = compare(quick(), out=tmp_path / "ray", executor=embedded, notify=messages.append, **kw)
    a, b = saved(tmp_path / "local"), saved(tmp_path / "ray")
    assert numbers(a) == numbers(b) == numbers(local) == numbers(on_ray)
    assert len(numbers(b)) == 4 and all(len(v) == 3 for v in numbers(b).values())
    for key in ("task", "config", "models", "summary", "failed"):
        assert without_timings(a[key]) == without_timings(b[key]), key
    assert a["configuration"]["executor"] == "local" and b["configuration"]["executor"] == "ray"
    assert b["configuration"]["jobs"] == 2
    started = [STARTED.match(m) for m in messages if STARTED.match(m)]
    assert len(started) == 4  # each run said where it ran
    # two worker processes served the four runs (and their compile caches with them)
    assert len({m[3] for m in started}) == 2
    # the driver wrote every run folder as the local executor does, checkpoints included
    for model in ("node", "hbnode"):
        for seed in (0, 1):
            here, there = (tmp_path / x / "runs" / model / f"seed{seed}" for x in ("local", "ray"))
            assert sorted(p.name for p in there.iterdir()) == FEW_EPOCHS_FILES
            assert sorted(p.name for p in here.iterdir()) == FEW_EPOCHS_FILES
            assert without_timings(read_log(here)) == without_timings(read_log(there))
            mine, theirs = (
                read_checkpoint(here / "checkpoint.pt"),
                read_checkpoint(there / "checkpoint.pt"),
            )
            assert mine["config"] == theirs["config"]
            for name, tensor in mine["model"].items():
                assert torch.equal(tensor, theirs["model"][name]), name
            sessions = json.loads((there / "provenance.json").read_text())["sessions"]
            assert [s["first_epoch"] for s in sessions] == [1]


def test_a_worker_killed_mid_run_is_retried_from_its_last_epoch_and_every_epoch_is_there_once(
    tmp_path, embedded
):
    epochs = 40  # long enough that the run is still going when the kill lands
    pids, killed, messages = {}, [], []

    def notify(text):
        messages.append(text)
        found = STARTED.match(text)
        if found:
            pids[(found[1], int(found[2]))] = int(found[3])

    def on_epoch(model, seed, record):
        if (model, seed) == ("node", 0) and record["epoch"] >= 3 and not killed:
            os.kill(pids[("node", 0)], signal.SIGKILL)  # the Ray worker training it
            killed.append(record["epoch"])

    results = compare(
        quick(epochs),
        models=["node"],
        seeds=2,
        out=tmp_path,
        progress=False,
        executor=embedded,
        on_epoch=on_epoch,
        notify=notify,
    )
    assert killed and results["failed"] == []
    attempts = [m for m in messages if m.startswith("node seed 0: on ")]
    assert [STARTED.match(m)[4] for m in attempts] == ["1", "2"]
    resumed = [m for m in messages if m.startswith("node seed 0: resuming")]
    (after,) = (int(re.search(r"after epoch (\d+)", m)[1]) for m in resumed)
    assert after >= killed[0]  # from the last epoch the driver had, shipped to the retry
    assert str(tmp_path / "runs" / "node" / "seed0") in resumed[0]  # the driver's folder
    for seed in (0, 1):
        run = tmp_path / "runs" / "node" / f"seed{seed}"
        assert [e["epoch"] for e in read_log(run)] == list(range(1, epochs + 1))
        assert [e["epoch"] for e in saved(tmp_path)["models"]["node"]["runs"][seed]["epochs"]] == (
            list(range(1, epochs + 1))
        )
    sessions = json.loads((tmp_path / "runs/node/seed0/provenance.json").read_text())["sessions"]
    assert [s["first_epoch"] for s in sessions] == [1, after + 1]
    # resumed exactly: the numbers of an uninterrupted run with the same threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train(quick(epochs, model="node", seed=0), progress=False).history
    finally:
        torch.set_num_threads(threads)
    got = results["models"]["node"]["runs"][0]["epochs"]
    assert [(e["loss"], e["nfe_forward"], e["nfe_backward"]) for e in got] == [
        (e["loss"], e["nfe_forward"], e["nfe_backward"]) for e in alone
    ]


def test_a_run_that_fails_for_its_own_reasons_is_recorded_as_failed_and_not_retried(
    tmp_path, embedded
):
    messages = []
    results = compare(
        quick(2, solve={"max_steps": 3}),  # every solve needs more: a SolverError in epoch 1
        models=["node"],
        seeds=2,
        out=tmp_path,
        progress=False,
        executor=embedded,
        notify=messages.append,
    )
    assert [(f["model"], f["seed"], f["epoch"]) for f in results["failed"]] == [
        ("node", 0, 1),
        ("node", 1, 1),
    ]
    for failure in results["failed"]:
        assert failure["cause"].startswith("the solver took too many steps in the forward solve")
    assert saved(tmp_path)["failed"] == results["failed"]
    attempts = [STARTED.match(m)[4] for m in messages if STARTED.match(m)]
    assert attempts == ["1", "1"]  # not retried
    for seed in (0, 1):
        lines = (tmp_path / "runs" / "node" / f"seed{seed}" / "log.jsonl").read_text()
        last = json.loads(lines.splitlines()[-1])
        assert last["status"] == "failed" and last["cause"].startswith("the solver took too many")
        assert "nesterovnode-run-" not in lines  # no path of the worker's temporary folder
    assert (tmp_path / "loss.png").exists() and (tmp_path / "results.json").exists()


def test_a_sweep_begun_on_the_local_pool_is_finished_on_ray_in_one_results_json(tmp_path, embedded):
    kw = dict(models=["node", "hbnode"], progress=False)
    reference = compare(
        quick(3), seeds=2, out=tmp_path / "ref", executor=ProcessPool(2, False), **kw
    )
    out = tmp_path / "mixed"
    compare(quick(2), seeds=1, out=out, executor=ProcessPool(2, False), **kw)  # half: local
    messages = []
    results = compare(
        quick(3), seeds=2, out=out, resume=True, executor=embedded, notify=messages.append, **kw
    )
    assert numbers(results) == numbers(saved(out)) == numbers(reference)
    assert saved(out)["config"]["seeds"] == 2 and saved(out)["configuration"]["executor"] == "ray"
    for model in ("node", "hbnode"):
        # seed 0: begun locally (epochs 1-2), continued on Ray from the shipped checkpoint
        assert any(m.startswith(f"{model} seed 0: resuming") for m in messages)
        first = json.loads((out / "runs" / model / "seed0" / "provenance.json").read_text())
        assert [s["first_epoch"] for s in first["sessions"]] == [1, 3]
        assert [e["epoch"] for e in read_log(out / "runs" / model / "seed1")] == [1, 2, 3]
    # and resuming the finished sweep on the local pool trains nothing and changes nothing
    again = compare(quick(3), seeds=2, out=out, resume=True, executor=ProcessPool(2, False), **kw)
    assert numbers(again) == numbers(reference)


def test_an_experiments_labelled_runs_of_one_model_go_to_ray_and_equal_a_run_here(
    tmp_path, embedded
):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "experiments" / "_common.py"
    spec = importlib.util.spec_from_file_location("experiments_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    runs = [
        (f"r={r}", quick(2, model="nesterovnode", seed=s, model_options={"r": r}))
        for r in (3.0, 5.0)
        for s in (0, 1)
    ]
    on_ray = common.train_runs(runs, tmp_path / "ray", "pointcloud", {}, True, embedded)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the threads of a Ray task here
    try:
        here = common.train_runs(runs, tmp_path / "here", "pointcloud", {}, quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert list(on_ray["models"]) == list(here["models"]) == ["r=3.0", "r=5.0"]
    assert numbers(on_ray) == numbers(here) == numbers(saved(tmp_path / "ray"))
    assert numbers(on_ray)[("r=3.0", 0)] != numbers(on_ray)[("r=5.0", 0)]
    for label in ("r=3.0", "r=5.0"):
        for seed in (0, 1):
            run = tmp_path / "ray" / "runs" / label / f"seed{seed}"
            assert [e["epoch"] for e in read_log(run)] == [1, 2]


# -- bad input: the CLI in its own process --------------------------------------------------
def cli(*args, env=None, timeout=300):
    """``python -m nesterovnode ARGS`` with this checkout's sources first; (rc, out, err,
    seconds)."""
    full = {**os.environ, "PYTHONPATH": SOURCES, **(env or {})}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=full, timeout=timeout
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SMALL = ["pointcloud", "--models", "node", "hbnode", "--seeds", "2", "--epochs", "3"]
SMALL += ["--compile", "off", "--no-progress", "--executor", "ray"]


def test_an_address_that_does_not_answer_is_a_clear_error_within_seconds_and_writes_nothing(
    tmp_path,
):
    out = tmp_path / "out"
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    rc, _, err, seconds = cli("-m", "nesterovnode", "compare", *SMALL, "--address", address,
                              "--out", str(out))  # fmt: skip
    assert rc == 2, err
    assert f"no Ray cluster answers at --address {address}" in err and "ray start --head" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert seconds < 30  # the interpreter and torch start in a few; the probe fails at once
    assert not out.exists()


def test_executor_ray_without_ray_installed_names_the_install_command(tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['ray'] = None  # what an installation without Ray gives\n"
        "from nesterovnode.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    rc, _, err, _ = cli("-c", code, "compare", *SMALL, "--out", str(out))
    assert rc == 2, err
    assert "--executor ray needs Ray" in err and 'pip install "nesterovnode[cluster]"' in err
    assert not out.exists()


def test_importing_nesterovnode_and_its_cli_imports_no_ray():
    code = (
        "import sys, nesterovnode, nesterovnode.runs, nesterovnode.runs.cluster, "
        "nesterovnode.cli, nesterovnode.cli.runs\n"
        "print('ray' in sys.modules)"
    )
    rc, out, err, _ = cli("-c", code)
    assert rc == 0, err
    assert out.strip() == "False"


# -- clusters of `ray start` nodes on this machine ------------------------------------------
def start_node(temp_dir: str, *, head_port: int | None = None, address: str | None = None,
               python: str = sys.executable, sources: bool = True) -> None:  # fmt: skip
    """``ray start`` a node of one CPU with its own temp dir: the head (``head_port``) or a
    node joining ``address``; its workers run ``python`` (with this checkout's sources
    first when ``sources``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_AUTH_MODE"] = "disabled"  # the test's cluster: no token to hand around
    if sources:
        env["PYTHONPATH"] = SOURCES
    where = (
        ["--head", f"--port={head_port}", "--include-dashboard=false"]
        if head_port
        else [f"--address={address}"]
    )
    cmd = [python, "-c", "import sys; from ray.scripts.scripts import main; "
           "sys.argv[0] = 'ray'; main()", "start", *where, "--num-cpus=1",
           f"--temp-dir={temp_dir}", "--disable-usage-stats"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def node_processes(temp_dirs: list[str]) -> list[int]:
    """The pids of the processes of the nodes started with ``temp_dirs`` (their command
    lines name them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(d in line for d in temp_dirs):
            found.append(int(entry.name))
    return found


def stop_nodes(temp_dirs: list[str]) -> None:
    """End the nodes started with ``temp_dirs``, by their processes' ids (``ray stop``
    would end every Ray process of this machine): SIGTERM, then SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in node_processes(temp_dirs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while node_processes(temp_dirs) and time.monotonic() < deadline:
            time.sleep(0.3)
        if not node_processes(temp_dirs):
            return


@pytest.fixture
def temp_dirs():
    """Short temp dirs for `ray start` nodes (Ray's socket paths must stay short); every
    node started in them is stopped after the test."""
    made = []

    def make() -> str:
        made.append(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
        return made[-1]

    yield make
    stop_nodes(made)
    assert node_processes(made) == []
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def bare_python():
    """A Python with torch and Ray but without nesterovnode: a venv that sees this one's
    site-packages through a .pth line (so the editable install's own .pth is not read)."""
    import sysconfig

    venv = Path(tempfile.mkdtemp(prefix="nr-venv-", dir="/tmp"))
    base = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import ray, torch\ntry:\n import nesterovnode\nexcept ImportError:\n"
         " print('missing')"], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    if probe.stdout.strip() != "missing":
        pytest.skip(f"nesterovnode is installed into site-packages itself: {probe.stderr}")
    yield python
    shutil.rmtree(venv, ignore_errors=True)


def test_a_cluster_whose_node_lacks_nesterovnode_is_an_error_naming_the_node(
    tmp_path, temp_dirs, bare_python
):
    port = free_port()
    start_node(temp_dirs(), head_port=port, python=bare_python, sources=False)
    out = tmp_path / "out"
    rc, _, err, _ = cli("-m", "nesterovnode", "compare", *SMALL, "--address",
                        f"127.0.0.1:{port}", "--out", str(out),
                        env={"RAY_AUTH_MODE": "disabled"})  # fmt: skip
    assert rc == 2, err
    assert re.search(r"node \S+ \(id \w+, host \S+, Python " + re.escape(bare_python), err), err
    assert "cannot import nesterovnode (ModuleNotFoundError" in err
    assert 'pip install "nesterovnode[cluster]"' in err
    assert not out.exists()


@pytest.mark.slow
def test_a_two_node_cluster_runs_the_sweep_and_the_driver_folder_holds_every_run(
    tmp_path, temp_dirs
):
    port = free_port()
    start_node(temp_dirs(), head_port=port)
    start_node(temp_dirs(), address=f"127.0.0.1:{port}")
    out = tmp_path / "out"
    rc, stdout, err, _ = cli("-m", "nesterovnode", "compare", *SMALL, "--address",
                             f"127.0.0.1:{port}", "--out", str(out),
                             env={"RAY_AUTH_MODE": "disabled"})  # fmt: skip
    assert rc == 0, err
    assert "2 run(s) in parallel on Ray" in stdout
    nodes = {m[1] for m in re.finditer(r"seed \d+: on \S+ \(node (\w+)\), pid", err)}
    assert len(nodes) == 2, err  # both nodes trained runs, and sent them back
    results = saved(out)
    assert results["configuration"]["executor"] == "ray" and results["failed"] == []
    for model in ("node", "hbnode"):
        for seed in (0, 1):
            run = out / "runs" / model / f"seed{seed}"
            assert sorted(p.name for p in run.iterdir()) == FEW_EPOCHS_FILES
            assert [e["epoch"] for e in read_log(run)] == [1, 2, 3]
    local = compare(quick(), models=["node", "hbnode"], seeds=2, out=tmp_path / "local",
                    executor=ProcessPool(2, False), progress=False)  # fmt: skip
    assert numbers(results) == numbers(local)
