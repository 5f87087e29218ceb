"""A sweep on Ray: each run of the grid one Ray task, its results sent back to the driver.

``RayExecutor`` is an ``Executor`` (``sweep``): ``compare(..., executor=RayExecutor())``
runs the same ``run_job`` as the local executors, on a Ray cluster's workers:

- **where**: ``address=None`` starts an embedded local Ray (``ray.init`` with this
  machine's cores, or ``num_cpus``); ``"auto"`` joins the cluster this machine is a node
  of; ``"HOST:PORT"`` (a head's GCS) or ``"ray://HOST:PORT"`` (Ray Client) a remote one. An
  address that does not answer is a ``ClusterError`` within seconds (a TCP probe before
  ``ray.init``), before anything is written.
- **what each node needs**: nesterovnode and torch of the driver's versions (a check
  runs on every node first: a node that lacks them is a ``ClusterError`` naming the node
  and what is missing) and Ray itself (``pip install "nesterovnode[cluster]"``).
- **resources and workers**: a sweep starts as many ``RunWorker`` actors as the cluster
  holds (its CPUs over ``threads``, or its GPUs on ``device`` cuda; at most one per run),
  each asking for ``threads`` CPUs (its torch threads) and on cuda one GPU, spread over
  the nodes. Each run is one Ray task, a call of an idle actor, handed out the costliest
  first (``sweep`` orders them). An actor is one long-lived process: its TorchInductor
  caches serve every run it trains after its first of a model, so a 50-seed sweep does
  not start cold 50 times per model. (The pool is sized when the sweep starts: nodes
  that join later are not used by it.)
- **no shared filesystem**: a task trains in a temporary folder on its node; after every
  epoch it sends the epoch's record and the run's folder files (``checkpoint.run_files``:
  checkpoint, log, config, provenance, feature snapshots) through the object store to a
  small ``Relay`` actor, from which the driver writes the run folder atomically
  (``checkpoint.write_run_files``), leaving it exactly as the local executor would. A run
  with a checkpoint in the driver's folder (``--resume``, whichever executor wrote it) has
  it shipped to its task; a task that Ray retries starts from the last epoch the relay
  received, so a lost worker or node costs at most one epoch.
- **faults**: a worker process or node that dies is retried by Ray: the actor is
  restarted and the run's task run again (``max_restarts`` = ``max_task_retries`` =
  ``retries``, default 3); past that the run is recorded as failed (cause: its worker
  died) with its epochs kept, and ``--resume`` continues it. A run that fails for
  its own reasons (``RunFailed``: divergence, a solver error) is an entry like any other
  and is not retried; another exception in a task is raised in the driver as itself
  (``compare`` then writes what finished). Ctrl-C cancels the tasks not finished; every
  epoch the driver received is in the run folders.
- **same numbers**: a task sets ``torch.set_num_threads(threads)`` and runs ``run_job``;
  with the same threads the local pool uses (one on two cores with two jobs) a CPU sweep's
  losses and NFE are bit-identical on either executor.

Importing this module does not import Ray: ``RayExecutor.start`` (or ``workers``) does,
and without Ray raises ``ClusterError`` with the install command.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import run_files, write_run_files
from .sweep import Job, failed_entry, run_job, show_epoch, sweep_bar

#: the Ray version the ``cluster`` extra pins and the tests run
RAY_VERSION = "2.60.0"
INSTALL = f'pip install "nesterovnode[cluster]"  (Ray {RAY_VERSION})'


class ClusterError(RuntimeError):
    """Ray is missing, its cluster cannot be reached, or a node cannot run the runs."""


def import_ray():
    """The ``ray`` module, or ``ClusterError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(
            f"--executor ray needs Ray, which is not installed here ({exc}); install the "
            f"cluster extra: {INSTALL}, on this machine and on every node of the cluster"
        ) from None
    return ray


class Relay:
    """A Ray actor between the tasks and the driver (one per sweep): it holds each run's
    latest folder files (those shipped by the driver, then those of its last epoch), gives
    them to the run's task when it starts (again, if Ray retries it), and queues the
    epochs and messages for the driver, which ``drain``s them."""

    def __init__(self, shipped: dict[tuple[str, int], dict[str, bytes]]):
        self._latest = dict(shipped)
        self._last_epoch: dict[tuple[str, int], int] = {}
        self._attempts: dict[tuple[str, int], int] = {}
        self._events: list[tuple] = []

    def begin(self, key: tuple[str, int]) -> tuple[dict[str, bytes], int]:
        """The folder files a run's task starts from, and which attempt it is (1, 2...)."""
        self._attempts[key] = self._attempts.get(key, 0) + 1
        return self._latest.get(key, {}), self._attempts[key]

    def epoch(self, key: tuple[str, int], record: dict[str, Any], files: dict[str, bytes]):
        """A run finished ``record["epoch"]``; ``files``: its folder after it. An epoch
        already received (a retried task cannot send one, but a message may come twice)
        is dropped: every epoch reaches the driver once."""
        if record["epoch"] <= self._last_epoch.get(key, 0):
            return False
        self._last_epoch[key] = record["epoch"]
        self._latest[key] = files
        self._events.append(("epoch", key, record, files))
        return True

    def message(self, key: tuple[str, int], text: str) -> None:
        """A run's message for the driver's ``notify``."""
        self._events.append(("message", key, text))

    def drain(self) -> list[tuple]:
        """Everything received since the last call, in order."""
        events, self._events = self._events, []
        return events


def _task(job: Job, relay, threads: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """One run on a Ray worker: ``run_job`` in a temporary folder holding the files the
    relay gives it; every epoch's record and folder go to the relay. Returns the run's
    entry and its folder's final files (paths in texts name the driver's folder)."""
    import ray

    torch.set_num_threads(threads)
    model, seed = job.label, job.config.seed
    key = job.key
    files, attempt = ray.get(relay.begin.remote(key))
    context = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()} (node {context.get_node_id()[:8]})"
    with tempfile.TemporaryDirectory(prefix="nesterovnode-run-") as tmp:
        here = Path(tmp)
        write_run_files(here, files)

        def local(text: str) -> str:  # the driver's folder, not this temporary one
            return text.replace(str(here), str(job.folder))

        # calls from one task to one actor run in order: this message comes first
        relay.message.remote(
            key, f"{model} seed {seed}: on {node}, pid {os.getpid()} (attempt {attempt})"
        )
        entry = run_job(
            job,
            here,
            progress=False,
            on_epoch=lambda m, s, record: ray.get(relay.epoch.remote(key, record, run_files(here))),
            notify=lambda text: relay.message.remote(key, local(text)),
        )
        final = run_files(here)
    if "failure" in entry:
        entry["failure"]["message"] = local(entry["failure"]["message"])
    if "log.jsonl" in final:
        final["log.jsonl"] = local(final["log.jsonl"].decode()).encode()
    return entry, final


class RunWorker:
    """A Ray actor that trains runs one after another (``_task`` each): one process, so
    its TorchInductor caches serve every run it trains after its first of a model. Ray
    restarts it where its process or node dies and runs the interrupted run again, which
    continues from the last epoch the relay holds."""

    def __init__(self, threads: int):
        torch.set_num_threads(threads)

    def run(self, job: Job, relay, threads: int) -> tuple[dict[str, Any], dict[str, bytes]]:
        """``_task(job, relay, threads)`` in this actor's process."""
        return _task(job, relay, threads)


def _probe() -> dict[str, Any]:
    """What a node has (run there by ``check_nodes``; built in the driver, so that it
    travels by value and runs where nesterovnode is missing)."""

    def probe():
        import importlib
        import os
        import platform
        import socket
        import sys

        found = {
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "pid": os.getpid(),
        }
        for name in ("nesterovnode", "torch"):
            try:
                found[name] = importlib.import_module(name).__version__
            except Exception as exc:  # noqa: BLE001 - whatever the import raises is the news
                found[name] = None
                found[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        return found

    return probe


class RayExecutor:
    """Runs of a sweep as Ray tasks (the module doc). ``address``: None (an embedded
    local Ray of ``num_cpus`` CPUs, default this machine's), ``"auto"``, ``"HOST:PORT"``
    or ``"ray://HOST:PORT"``; ``threads``: CPUs and torch threads per run; ``device``:
    ``"cuda"`` gives each run one GPU; ``retries``: Ray's ``max_retries`` for a run whose
    worker or node dies. ``start()`` connects (``workers`` too); ``close()`` shuts down an
    embedded Ray, or leaves a cluster (a ``with`` block does both)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        threads: int = 1,
        device: str = "cpu",
        retries: int = 3,
        num_cpus: int | None = None,
        progress: bool = True,
        connect_timeout: float = 5.0,
    ):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.address, self.threads, self.device = address, threads, device
        self.retries, self.num_cpus, self.progress = retries, num_cpus, progress
        self.connect_timeout = connect_timeout
        self._ray = None
        self._started_ray = False
        self.nodes: list[dict[str, Any]] = []  #: what ``check_nodes`` found on each node

    # -- connecting ------------------------------------------------------------------
    def start(self) -> RayExecutor:
        """Import Ray, start or join the cluster, check every node (``check_nodes``)."""
        if self._ray is not None:
            return self
        ray = import_ray()
        if ray.is_initialized():
            if self.address is not None:
                raise ClusterError(
                    f"Ray is already initialized in this process, so address "
                    f"{self.address!r} cannot be joined: pass address=None to run on that Ray, "
                    f"or call ray.shutdown() first"
                )
            self._ray = ray  # the caller's own Ray: used as it is, and left running
        else:
            if self.address not in (None, "auto", "local"):
                _probe_address(self.address, self.connect_timeout)
            kw: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
            if self.address is None:
                kw |= {"num_cpus": self.num_cpus or os.cpu_count(), "include_dashboard": False}
            try:
                ray.init(address=self.address, **kw)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
                raise ClusterError(_no_cluster(self.address, exc)) from None
            self._ray, self._started_ray = ray, True
        try:
            self.check_nodes()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Shut down the Ray this executor started (an embedded one stops; a cluster is
        left, its tasks of this driver ended by Ray)."""
        if self._ray is not None and self._started_ray:
            self._ray.shutdown()
        self._ray, self._started_ray = None, False

    def __enter__(self) -> RayExecutor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """How many runs the cluster holds at once: its CPUs over ``threads`` (its GPUs
        with ``device`` cuda; a cluster without one is a ``ClusterError``)."""
        ray = self.start()._ray
        resources = ray.cluster_resources()
        if self._gpus():
            if resources.get("GPU", 0) < 1:
                raise ClusterError(
                    f"--device {self.device} gives each run one GPU, but the Ray cluster offers "
                    f"none (its resources: {resources}); start its nodes where torch sees a GPU "
                    f"(ray start --num-gpus N), or pass --device cpu"
                )
            return int(resources["GPU"])
        return max(1, int(resources.get("CPU", 0)) // self.threads)

    def _gpus(self) -> int:
        return 1 if str(self.device).startswith("cuda") else 0

    def check_nodes(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Run a probe on every live node; ``ClusterError`` naming each node that cannot
        import nesterovnode or torch, or holds other versions than this driver (its runs
        would not give this driver's numbers), and what to install there."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        import nesterovnode

        probe = ray.remote(num_cpus=0, max_retries=0)(_probe())
        alive = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote()
            for n in alive
        ]
        found = ray.get(refs, timeout=timeout)
        wanted = {"nesterovnode": nesterovnode.__version__, "torch": torch.__version__}
        problems = []
        self.nodes = []
        for node, has in zip(alive, found):
            where = (
                f"node {node['NodeManagerAddress']} (id {node['NodeID'][:8]}, host "
                f"{has['host']}, Python {has['executable']})"
            )
            self.nodes.append({"address": node["NodeManagerAddress"], "id": node["NodeID"], **has})
            for name, version in wanted.items():
                if has[name] is None:
                    problems.append(f"{where} cannot import {name} ({has[name + '_error']})")
                elif has[name] != version:
                    problems.append(f"{where} has {name} {has[name]}, this driver {version}")
        if problems:
            raise ClusterError(
                "the cluster cannot run these runs: "
                + "; ".join(problems)
                + f". Install on every node the driver's nesterovnode "
                f"{wanted['nesterovnode']} and torch {wanted['torch']} into the Python that "
                f"runs `ray start` there ({INSTALL}; from a checkout: pip install "
                f'-e ".[cluster]"), then restart that node'
            )
        return self.nodes

    # -- running -----------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], on_result, *, on_epoch=None, notify=None):
        """See ``Executor.run``: the jobs in the given order, each handed to the next idle
        ``RunWorker`` actor (``workers`` of them, at most one per job)."""
        ray = self.start()._ray
        if not jobs:
            return []
        shipped = {j.key: files for j in jobs if (files := run_files(j.folder))}
        relay_options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
        if "node:__internal_head__" in ray.cluster_resources():
            relay_options["resources"] = {"node:__internal_head__": 0.001}
        relay = ray.remote(Relay).options(**relay_options).remote(shipped)
        worker = ray.remote(RunWorker).options(
            num_cpus=self.threads,
            num_gpus=self._gpus(),
            max_restarts=self.retries,  # a dead worker process or node: a new process
            max_task_retries=self.retries,  # ... that runs the run again, from its relay
            scheduling_strategy="SPREAD",
        )
        idle = [worker.remote(self.threads) for _ in range(min(self.workers, len(jobs)))]
        actors = list(idle)
        folders = {j.key: j.folder for j in jobs}
        bar = sweep_bar(jobs, len(actors), self.progress)

        def drain() -> None:
            """Write the epochs the relay received to the run folders; pass on messages."""
            for event in ray.get(relay.drain.remote()):
                if event[0] == "message":
                    if notify is not None:
                        notify(event[2])
                    continue
                _, (label, seed), record, files = event
                write_run_files(folders[(label, seed)], files)
                if on_epoch is not None:
                    on_epoch(label, seed, record)
                show_epoch(bar, label, seed, record)

        waiting = list(jobs)
        running: dict[Any, tuple[Job, Any]] = {}  # ref -> (job, actor)
        entries = []
        try:
            while waiting or running:
                while waiting and idle:
                    actor = idle.pop(0)
                    job = waiting.pop(0)
                    running[actor.run.remote(job, relay, self.threads)] = (job, actor)
                if not running:  # every worker is gone: the rest cannot run
                    for job in waiting:
                        entries.append(self._lost(job, "no Ray worker is left", notify))
                        on_result(entries[-1])
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                drain()
                for ref in done:
                    job, actor = running.pop(ref)
                    entry, alive = self._outcome(ray, ref, job, notify)
                    if alive:
                        idle.append(actor)
                    entries.append(entry)
                    on_result(entry)
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            with contextlib.suppress(Exception):
                drain()  # the epochs that arrived meanwhile are kept too
            bar.close()
            for actor in (*actors, relay):
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            raise
        bar.close()
        for actor in (*actors, relay):
            ray.kill(actor, no_restart=True)
        return entries

    def _lost(self, job: Job, cause: str, notify) -> dict[str, Any]:
        """The failed entry of a run that Ray could not finish (its worker died past the
        retries): the epochs the driver received are kept, and ``--resume`` continues."""
        from .checkpoint import read_log

        history = read_log(job.folder) if (job.folder / "log.jsonl").exists() else []
        c = job.config
        fix = "rerun with --resume to continue it (or allow more with --retries)"
        message = (
            f"{job.label} seed {c.seed} failed in epoch {len(history) + 1}: {cause}; {fix} "
            f"({len(history)} finished epochs kept in {job.folder})"
        )
        if notify is not None:
            notify(f"failed: {message}")
        failure = {"epoch": len(history) + 1, "cause": cause, "fix": fix, "message": message}
        return failed_entry(c, history, failure, job.name)

    def _outcome(self, ray, ref, job: Job, notify) -> tuple[dict[str, Any], bool]:
        """A finished run's entry (its final folder written) and whether its worker lives
        on. A run whose worker died more often than ``retries`` allow is a failed entry
        (``_lost``); an error raised in the run is raised here as itself."""
        from ray.exceptions import RayTaskError

        try:
            entry, files = ray.get(ref)
        except RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:
            cause = f"its Ray worker or node died {self.retries + 1} time(s) ({type(exc).__name__})"
            return self._lost(job, cause, notify), False
        write_run_files(job.folder, files)
        return entry, True


def _probe_address(address: str, timeout: float) -> None:
    """Raise ``ClusterError`` unless something accepts TCP connections at ``address``
    (``HOST:PORT`` or ``ray://HOST:PORT``) within ``timeout`` seconds."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"--address {address!r} is not an address of a Ray cluster: pass HOST:PORT (the "
            f"head's GCS, 6379 by default), ray://HOST:PORT (Ray Client, 10001), or auto"
        )
    start = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(
            _no_cluster(address, exc, f" within {time.monotonic() - start:.1f} s")
        ) from None


def _no_cluster(address: str | None, exc: BaseException, when: str = "") -> str:
    """What to do when no Ray cluster answers at ``address``."""
    if address in (None, "local"):
        return f"could not start a local Ray ({type(exc).__name__}: {exc}); nothing was written"
    if address == "auto":
        return (
            f"--address auto found no running Ray cluster on this machine ({exc}); start one "
            f"with `ray start --head`, or pass the head's HOST:PORT; nothing was written"
        )
    return (
        f"no Ray cluster answers at --address {address}{when} "
        f"({type(exc).__name__}: {exc}); check the address (`ray start --head` prints it: "
        f"HOST:6379, or ray://HOST:10001 for Ray Client), that this machine can reach that "
        f"port, and, where the cluster uses token authentication, that its token is here "
        f"(RAY_AUTH_MODE=token with ~/.ray/auth_token or RAY_AUTH_TOKEN; docs/cluster.md); "
        f"nothing was written"
    )


__all__ = [
    "INSTALL",
    "RAY_VERSION",
    "ClusterError",
    "RayExecutor",
    "Relay",
    "RunWorker",
    "import_ray",
]
