"""The rk engine's compiled steps (``options={"compile": True}``, solve/engines/rk/compiled.py)
and the training runs' ``compile`` setting (runs/compiling.py).

A compiled step is traced once with ``make_fx`` and compiled by TorchInductor; it must
take the eager steps (same NFE), give the eager states and gradients to round-off, see
the optimiser's in-place parameter updates (parameters are graph inputs, not constants),
and fall back to eager steps with a warning where compilation fails.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import nesterovnode as nno
from helpers import make_dynamics
from nesterovnode.runs.compiling import compile_steps, compile_value
from nesterovnode.runs.training import TrainConfig
from nesterovnode.solve.engines.rk.plan import Kind
from nesterovnode.solve.engines.rk.programs import compiled as compiled_module
from nesterovnode.solve.registry import get_engine


def _readout_squares(dyn, times, sol):
    return dyn.readout(torch.tensor(times), sol.ys).square().sum()


def _solve_and_grad(dyn, h0, options, times=(1.0, 1.5, 2.0), loss=_readout_squares):
    """ys, the parameters' gradient (flat) and (NFE forward, NFE backward) of one adjoint
    solve of ``loss`` (by default one reading every output time)."""
    dyn.zero_grad()
    y0 = dyn.initial_state(times[0], h0)
    sol = nno.solve(dyn, y0, list(times), rtol=1e-6, atol=1e-6, options=options)
    # the compiled programs run in inference mode; what the solve returns must be normal
    # tensors that autograd can save (the readout below does)
    assert not sol.ys.is_inference()
    loss(dyn, times, sol).backward()
    grads = torch.cat([p.grad.reshape(-1) for p in dyn.parameters() if p.grad is not None])
    return sol.ys.detach(), grads, (sol.stats.nfe_forward, sol.stats.nfe_backward)


def _assert_eager_numbers(yc, gc, ye, ge):
    """Compiled states ``yc`` and gradients ``gc`` against the eager ``ye``, ``ge``."""
    assert torch.allclose(yc, ye, rtol=0, atol=1e-12)
    assert torch.allclose(gc, ge, rtol=1e-10, atol=1e-12)


def _compiled_runners():
    return [
        r
        for r in get_engine("rk").runners._runners.values()
        if isinstance(r, compiled_module.CompiledRunner)
    ]


def _kind(key) -> Kind:
    """A runner's kind (``plan.Kind``) from its cache key (``RunPlan.key``)."""
    return key[0]


#: what ``compile=True`` compiles for the adjoint solves of ``_solve_and_grad`` (three
#: output times): the forward solve's first-step rule and steps, called from the host's
#: loop (dense output at 1.5), and the adjoint's whole solve (one interval), which starts
#: from the step the forward proposed at its end
ALL = (Kind.FIRST_STEP_RULE, Kind.STEP, Kind.START_GIVEN)


def _check_compiled_equals_eager(name: str, update: bool, compile=True, kinds=ALL):
    """``compile``'s steps against the eager ones; ``kinds``: the programs it compiles."""
    torch.manual_seed(0)
    dyn = make_dynamics(name)
    h0 = torch.randn(5, 3)
    get_engine("rk").clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn
        ye, ge, nfe_e = _solve_and_grad(dyn, h0, {"compile": False})
        yc, gc, nfe_c = _solve_and_grad(dyn, h0, {"compile": compile})
    runners = _compiled_runners()
    compiled_kinds = sorted(
        _kind(key).name
        for key, r in get_engine("rk").runners._runners.items()
        if isinstance(r, compiled_module.CompiledRunner)
    )
    assert compiled_kinds == sorted(k.name for k in kinds)
    assert all(r.compile_seconds > 0 for r in runners)
    assert nfe_c == nfe_e and nfe_e[0] > 10
    _assert_eager_numbers(yc, gc, ye, ge)
    if update:
        # an optimiser's in-place update: the compiled steps must read the new values
        with torch.no_grad():
            for p in dyn.parameters():
                p.mul_(1.1).add_(0.01)
        ye2, ge2, nfe_e2 = _solve_and_grad(dyn, h0, {"compile": False})
        yc2, gc2, nfe_c2 = _solve_and_grad(dyn, h0, {"compile": compile})
        assert set(_compiled_runners()) == set(runners)  # the same compiled steps, not new ones
        assert (ye2 - ye).abs().max() > 1e-3  # the update changed the solution...
        assert nfe_c2 == nfe_e2
        _assert_eager_numbers(yc2, gc2, ye2, ge2)  # ...and the compiled steps saw it
    get_engine("rk").clear_caches()


def test_compiled_steps_give_the_eager_numbers_and_see_parameter_updates(float64):
    """NesterovNODE (its k(t) and t-dependent field): the forward and the adjoint steps
    compiled; the same NFE, states to 1e-12, gradients to 1e-10 relative, before and
    after an in-place parameter update."""
    _check_compiled_equals_eager("nesterovnode", update=True)


def test_compiling_the_steps_only_leaves_the_first_step_rule_eager(float64):
    """``compile="steps"``: the adaptive steps compiled, forward and adjoint, and the
    first-step rule (one call per solve) run eagerly; the eager NFE and numbers, before
    and after an in-place parameter update."""
    _check_compiled_equals_eager(
        "nesterovnode", update=True, compile="steps", kinds=(Kind.STEP, Kind.STEP)
    )


def test_the_compile_option_says_what_it_takes():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="'compile' must be one of True, False, 'steps'"):
        nno.solve(
            make_dynamics("node"),
            torch.randn(4, 3),
            [0.0, 1.0],
            rtol=1e-3,
            atol=1e-3,
            options={"compile": "all"},
        )


@pytest.mark.slow  # seven models, four compilations each
@pytest.mark.parametrize(
    "name", ["node", "anode", "sonode", "hbnode", "ghbnode", "nesterovnode", "gnesterovnode"]
)
def test_every_model_compiles_to_the_eager_numbers(name, float64):
    _check_compiled_equals_eager(name, update=False)


def _compilations() -> int:
    return sum(len(r.graphs) for r in _compiled_runners())


def test_one_compilation_serves_every_batch_size(float64):
    """The batch size is a symbol in the compiled steps: a run's last, smaller batch (the
    point cloud's 20 after 50s) reuses the three compilations of the first (``ALL``),
    with the eager numbers."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    dyn = make_dynamics("nesterovnode")
    get_engine("rk").clear_caches()
    bypassed = counters["aot_autograd"]["autograd_cache_bypass"]
    for size, compilations in ((5, 3), (3, 3), (7, 3)):
        h0 = torch.randn(size, 3)
        ye, ge, nfe_e = _solve_and_grad(dyn, h0, {"compile": False})
        yc, gc, nfe_c = _solve_and_grad(dyn, h0, {"compile": True})
        assert _compilations() == compilations, size
        assert nfe_c == nfe_e and yc.shape[1] == size
        _assert_eager_numbers(yc, gc, ye, ge)
    assert len(_compiled_runners()) == 3  # one runner per kind for all three sizes
    # AOTAutograd's disk cache took the graphs (it once bypassed every one of them: the
    # shape environment left on the graph made it unpicklable)
    assert counters["aot_autograd"]["autograd_cache_bypass"] == bypassed
    get_engine("rk").clear_caches()


def test_a_compiled_solve_is_prepared_once_for_its_own_settings(float64, monkeypatch):
    """The engine keeps a compiled solve's runners by their settings (its runner cache):
    a second solve with the same ones reuses them, and other tolerances get their own
    (more steps), each with the NFE and numbers of the host loop. The runners run their
    eager fallback here (as after a failed compilation: nothing to compile), which calls
    the closures kept with them: a solve served another's would take its steps."""
    monkeypatch.setitem(compiled_module.TOOLCHAIN, "failure", "not compiled in this test")
    torch.manual_seed(0)
    dyn = make_dynamics("node")
    engine = get_engine("rk")
    engine.clear_caches()
    y0 = torch.randn(4, 3)

    def forward(tol, loop):
        options = {"compile": True, "loop": loop}
        with torch.no_grad():
            sol = nno.solve(dyn, y0, [0.0, 1.0], rtol=tol, atol=tol, options=options)
        return sol.ys[-1], sol.stats.nfe_forward

    def starts():  # the whole solves' runners kept (one per settings)
        return [key for key in engine.runners._runners if _kind(key) is Kind.START]

    runs = [(tol, forward(tol, "compiled")) for tol in (1e-6, 1e-6, 1e-9, 1e-6)]
    assert len(starts()) == 2  # 1e-6 three times: one preparation
    assert runs[2][1][1] > runs[0][1][1] > 10
    for tol, (y, nfe) in runs:
        y_host, nfe_host = forward(tol, "host")
        assert nfe == nfe_host
        assert torch.allclose(y, y_host, rtol=0, atol=1e-12)
    engine.clear_caches()
    assert len(starts()) == 0


def test_compiled_steps_take_inputs_of_any_layout(float64):
    """A sum over the solution gives the adjoint a gradient of stride 0 (an expanded
    tensor), and a transposed tensor is a valid initial state: the compiled steps must
    take both and give the eager numbers (they once failed on the strides they were not
    compiled for: "expected ... stride 6==0")."""
    torch.manual_seed(0)
    dyn = make_dynamics("nesterovnode")  # the steps of the first test: compiled already
    get_engine("rk").clear_caches()
    h0 = torch.randn(3, 4).t()  # 4 rows, not contiguous

    def total(dyn, times, sol):
        return sol.ys.sum()  # its gradient: ones expanded, stride 0

    ye, ge, _ = _solve_and_grad(dyn, h0, {"compile": False}, loss=total)
    yc, gc, _ = _solve_and_grad(dyn, h0, {"compile": True}, loss=total)
    _assert_eager_numbers(yc, gc, ye, ge)
    assert ge.abs().max() > 1e-3
    get_engine("rk").clear_caches()


class _SizeTest(torch.nn.Module):
    """y' = -w y for batches of more than four rows, y' = +w y otherwise: a Python test on
    the batch size, which tracing records as a condition of the compiled step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, t, y):
        return -self.w * y if y.shape[0] > 4 else self.w * y


@pytest.mark.slow  # three compilations
def test_a_step_that_tests_the_batch_size_compiles_each_side_of_the_test(float64):
    """A compiled step whose conditions fail for a new batch size must not serve it: the
    size compiles on its own and gets its own side of the test (closed form
    y(1) = y0 e^(∓w))."""
    get_engine("rk").clear_caches()
    dyn = _SizeTest()

    def solve(size):
        y0 = torch.linspace(1.0, 2.0, 2 * size).reshape(size, 2)
        with torch.no_grad():
            sol = nno.solve(dyn, y0, [0.0, 1.0], rtol=1e-9, atol=1e-9, options={"compile": True})
        return y0, sol.ys[-1]

    for size, sign, compilations in ((6, -1, 1), (3, 1, 2), (8, -1, 2), (2, 1, 2), (1, 1, 3)):
        y0, y1 = solve(size)
        assert torch.allclose(y1, y0 * math.exp(sign * 0.5), rtol=1e-7, atol=0), size
        assert _compilations() == compilations, size
    get_engine("rk").clear_caches()


def test_a_failed_toolchain_warns_and_leaves_the_process_eager(float64, monkeypatch):
    """No C++ compiler (Inductor's ``InvalidCxxCompiler``): a warning names the compiler,
    the solve runs eagerly with the eager numbers, and later programs do not try again."""
    import torch._inductor
    from torch._inductor.exc import InvalidCxxCompiler

    tries = []

    def no_compiler(graph, examples):
        tries.append(graph)
        raise InvalidCxxCompiler()

    monkeypatch.setattr(torch._inductor, "compile", no_compiler)
    monkeypatch.setitem(compiled_module.TOOLCHAIN, "failure", None)
    monkeypatch.setitem(compiled_module.VECTOR_ISA, "trusted", True)
    torch.manual_seed(0)
    dyn = make_dynamics("hbnode")
    h0 = torch.randn(4, 3)
    get_engine("rk").clear_caches()
    ye, ge, nfe_e = _solve_and_grad(dyn, h0, {"compile": False})
    with pytest.warns(RuntimeWarning, match="the C\\+\\+ compiler that TorchInductor needs failed"):
        yc, gc, nfe_c = _solve_and_grad(dyn, h0, {"compile": True})
    assert nfe_c == nfe_e
    assert torch.equal(yc, ye) and torch.allclose(gc, ge, rtol=1e-12, atol=1e-14)
    # tried with the CPU's flags and with Inductor's probes; the failure then stops the
    # later programs (the adjoint's, a new shape) from trying
    assert len(tries) == 2
    _solve_and_grad(dyn, torch.randn(6, 3), {"compile": True})
    assert len(tries) == 2
    get_engine("rk").clear_caches()


def test_an_inductor_failure_leaves_that_program_eager_and_the_others_compiled(
    float64, monkeypatch
):
    """An error of Inductor's that is not the toolchain's (an op it lacks): the program
    that hit it runs eagerly, with a warning, and the next one compiles."""
    import torch._inductor

    real, tries = torch._inductor.compile, []

    def first_fails(graph, examples):
        tries.append(graph)
        if len(tries) <= 2:  # trusted, then probed: one program's two tries
            raise RuntimeError("an operator Inductor lacks")
        return real(graph, examples)

    monkeypatch.setattr(torch._inductor, "compile", first_fails)
    monkeypatch.setitem(compiled_module.TOOLCHAIN, "failure", None)
    monkeypatch.setitem(compiled_module.VECTOR_ISA, "trusted", True)
    get_engine("rk").clear_caches()
    with pytest.warns(RuntimeWarning, match="Inductor could not compile it .*an operator"):
        assert _decay_error(4, rtol=1e-10) < 1e-8
    _assert_compiles_cleanly(5)  # another program (other tolerances): compiled
    assert len(tries) == 3
    get_engine("rk").clear_caches()


class _WrongShape(torch.nn.Module):
    """A module used directly as dynamics whose output is [2] for a [B, 2] state."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, t, y):
        return -self.w * y[0]


def test_a_field_of_the_wrong_shape_is_an_error_that_leaves_compilation_on(float64):
    """A user's error while a program is traced is raised as the eager call raises it,
    naming both shapes, and the next compiled solve still compiles."""
    get_engine("rk").clear_caches()
    y0 = torch.ones(4, 2)
    for _ in range(2):  # the second time from the runner the first one left
        with pytest.raises(ValueError, match=r"shape \(2,\) for a state of shape \(4, 2\)"):
            with torch.no_grad():
                nno.solve(_WrongShape(), y0, [0.0, 1.0], options={"compile": True})
    _assert_compiles_cleanly(4)
    get_engine("rk").clear_caches()


class _Decay(torch.nn.Module):
    """y' = -w y (closed form y0 e^(-w t)), a step no other test compiles."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.75))

    def forward(self, t, y):
        return -self.w * y


def _assert_compiles_cleanly(size: int) -> None:
    """Compilation is on for the process, and ``_decay_error`` compiles one program with
    no fallback warning, to the closed form."""
    assert compiled_module.TOOLCHAIN["failure"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn
        assert _decay_error(size) < 1e-8
    assert _compilations() == 1


def _decay_error(size: int, rtol: float = 1e-9) -> float:
    y0 = torch.linspace(1.0, 2.0, 3 * size).reshape(size, 3)
    with torch.no_grad():
        sol = nno.solve(_Decay(), y0, [0.0, 1.0], rtol=rtol, atol=1e-9, options={"compile": True})
    return (sol.ys[-1] - y0 * math.exp(-0.75)).abs().max().item()


def test_the_vector_instructions_come_from_the_cpu_and_a_failure_probes_them(float64, monkeypatch):
    """Inductor's probes (a test compilation of ATen's vector code for each instruction set
    and its load, about 7 s in a process's first compilation) are skipped: the compiled
    step uses the set the CPU reports. A compilation that fails so is retried once with
    the probes."""
    from torch._inductor import cpu_vec_isa

    probes = []
    check_build = cpu_vec_isa.VecISA.check_build

    def counted(self, code):
        probes.append(code == cpu_vec_isa.VecISA._avx_code)  # a set's own probe
        return check_build(self, code)

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", counted)
    monkeypatch.setitem(compiled_module.VECTOR_ISA, "trusted", True)
    monkeypatch.setitem(compiled_module.TOOLCHAIN, "failure", None)
    cpu_vec_isa.valid_vec_isa_list.cache_clear()  # as in a new process
    get_engine("rk").clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn
        assert _decay_error(4) < 1e-8
    # (the light probes of single instructions, as AVX512-BF16's, still run)
    assert _compilations() == 1 and not any(probes)  # the whole solve

    # a compiler that lacks the CPU's instructions: the retry probes and compiles
    import torch._inductor
    import torch._inductor.config as inductor_config

    real, tries = torch._inductor.compile, []

    def lacking(graph, examples):
        trusted = inductor_config.cpp.vec_isa_ok is True
        tries.append(trusted)
        if trusted:
            raise RuntimeError("g++: error: unrecognized command-line option '-mavx512f'")
        return real(graph, examples)

    monkeypatch.setattr(torch._inductor, "compile", lacking)
    get_engine("rk").clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert _decay_error(5) < 1e-8
    assert tries == [True, False]  # trusted, then probed
    assert _compilations() == 1 and compiled_module.TOOLCHAIN["failure"] is None
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    get_engine("rk").clear_caches()


# -- the training runs' setting ------------------------------------------------------------
def test_auto_compiles_long_cpu_runs_of_tasks_that_measured_it():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # the point cloud's main job (300 iterations): the steps; its first-step rule, once
    # per solve, compiles only in runs long enough to repay its compilation
    assert compile_value("auto", cpu, 300, 300, 3000) == "steps"
    assert compile_value("auto", cpu, 2999, 300, 3000) == "steps"
    assert compile_value("auto", cpu, 3000, 300, 3000) is True
    assert compile_value("auto", cpu, 300, 300, None) is True  # no such threshold: all
    assert compile_value("auto", cpu, 299, 300, 3000) is False  # shorter runs stay eager
    assert compile_value("auto", cuda, 10_000, 300, 3000) is False  # GPUs replay CUDA graphs
    assert compile_value("auto", cpu, 10_000, None, None) is False  # not measured: eager
    assert compile_value("on", cuda, 1, None, 3000) is True
    assert compile_value("steps", cpu, 1, None, None) == "steps"
    assert compile_value("off", cpu, 10_000, 300, 3000) is False
    with pytest.raises(ValueError, match="compile must be one of auto, on, steps, off"):
        compile_value("yes", cpu, 1, None, None)


def test_the_setting_reaches_rk_blocks_only_and_is_not_part_of_a_runs_identity():
    from nesterovnode.tasks import get_task

    task = get_task("pointcloud")
    assert task.defaults.compile_after == 300 and task.defaults.compile_rule_after == 3000
    model = task.build_model("hbnode")
    assert compile_steps(model, "auto", True)
    assert model.block.config.options == {"compile": True}
    kept = task.build_model("hbnode", options={"compile": False})  # the user's own choice
    assert not compile_steps(kept, "on", True) and kept.block.config.options == {"compile": False}
    other = task.build_model("hbnode", engine="torchdiffeq")
    assert not compile_steps(other, "auto", True) and other.block.config.options == {}
    for setting, value in (("on", True), ("steps", "steps")):
        with pytest.raises(ValueError, match=f"--compile {setting} applies to the rk engine"):
            compile_steps(other, setting, value)
    steps = task.build_model("hbnode")
    assert compile_steps(steps, "auto", "steps")
    assert steps.block.config.options == {"compile": "steps"}
    # a module solving with its own SolveConfig (Walker2D's ODE-RNN) is reached too
    walker = get_task("walker2d").build_model("nesterovnode")
    assert compile_steps(walker, "on", True)
    configs = [m.config for m in walker.modules() if hasattr(m, "config")]
    assert configs and all(c.options.get("compile") is True for c in configs)
    a, b = TrainConfig(compile="on"), TrainConfig(compile="off")
    assert a.identity() == b.identity() and "compile" not in a.identity()
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="always").resolved(task)


def _point_cloud_with_a_first_compilation(monkeypatch, seconds: float, epochs: int, batch: int):
    """A small point-cloud task whose ODE block, on its first call, spends ``seconds``
    and books them as compilation (a stand-in for compiling its steps)."""
    import time

    from nesterovnode.layers import ODEBlock
    from nesterovnode.tasks.base import TaskDefaults
    from nesterovnode.tasks.pointcloud import PointCloudTask

    class Task(PointCloudTask):
        defaults = TaskDefaults(epochs=epochs, lr=1e-2, batch_size=batch, tol=1e-3)

    forward = ODEBlock.forward

    def compiling_once(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if not getattr(self, "_compiled_once", False):
            self._compiled_once = True
            time.sleep(seconds)
            self.stats.compile_seconds += seconds
        return out

    monkeypatch.setattr(ODEBlock, "forward", compiling_once)
    return Task()


def test_the_duration_estimate_leaves_the_compilation_out(monkeypatch):
    """Compiling happens in a run's first iterations, once: the estimate of the rest of
    the run must not count it per iteration (a compiled main job once announced hours)."""
    from nesterovnode.runs.training import train

    task = _point_cloud_with_a_first_compilation(monkeypatch, 1.0, epochs=1, batch=40)

    class Estimated(Exception):
        pass

    def stop_at_the_estimate(text):
        if "to go" in text:
            raise Estimated(text)

    config = TrainConfig(model="hbnode", epochs=100, compile="off")
    with pytest.raises(Estimated) as said:
        train(config, task=task, progress=False, notify=stop_at_the_estimate, estimate_after=3)
    text = str(said.value)
    per_iteration = float(text.split("(")[1].split(" s/iteration")[0])
    assert 0 < per_iteration < 0.3  # without the second of compiling (0.33 s per iteration)
    assert "3 iterations x 100 epochs" in text and "after 1 s compiling its steps" in text


def test_a_run_says_it_compiles_before_its_first_iteration(monkeypatch):
    """The first iteration of a compiled run waits half a minute on a cold cache: the run
    says why before it starts; an eager run says nothing of it."""
    from nesterovnode.runs import training

    task = _point_cloud_with_a_first_compilation(monkeypatch, 0.0, epochs=1, batch=60)
    said: dict[str, list[str]] = {"on": [], "steps": [], "off": []}
    # compile_steps answers whether a block compiles; the steps here stay eager
    monkeypatch.setattr(training, "compile_steps", lambda model, setting, value: bool(value))
    for setting in said:
        config = TrainConfig(model="hbnode", epochs=1, compile=setting)
        training.train(config, task=task, progress=False, notify=said[setting].append)
    for setting, seconds in (("on", "20-45 s"), ("steps", "10-30 s")):
        assert said[setting] and "hbnode seed 0: compiling its ODE steps" in said[setting][0]
        assert seconds in said[setting][0]  # two compilations per model instead of four
    assert not any("compiling its ODE steps" in text for text in said["off"])


def test_a_run_records_the_seconds_it_spent_compiling(monkeypatch):
    """Each epoch's record says how much of its ``seconds`` went to compiling steps."""
    from nesterovnode.runs.training import train

    task = _point_cloud_with_a_first_compilation(monkeypatch, 0.5, epochs=2, batch=60)
    result = train(TrainConfig(model="hbnode", compile="off"), task=task, progress=False)
    records = result.history
    assert [r["compile_seconds"] for r in records] == pytest.approx([0.5, 0.0])
    assert records[0]["seconds"] > 0.5  # part of the epoch's time


def test_the_comparison_header_says_how_the_steps_ran():
    from nesterovnode.cli.runs import _compiled

    def results(setting, *seconds):
        epochs = [{"epoch": i + 1, "compile_seconds": s} for i, s in enumerate(seconds)]
        return {
            "configuration": {"compile": setting},
            "models": {"hbnode": {"runs": [{"seed": 0, "epochs": epochs}]}},
        }

    assert _compiled(results("auto", 0.0, 0.0)) == "--compile auto: eager steps"
    assert (
        _compiled(results("auto", 31.6, 0.4))
        == "--compile auto: compiled steps, 32 s compiling in all runs"
    )


# -- the whole adaptive loop compiled (solve_loop.py) --------------------------------------
def _forward(dyn, y0, options, **kwargs):
    with torch.no_grad():
        return nno.solve(dyn, y0, [1.0, 2.0], rtol=1e-7, atol=1e-7, options=options, **kwargs)


def test_the_compiled_solve_takes_the_eager_steps(float64):
    """A forward solve to T with ``compile=True`` runs as one compiled program, the
    first-step rule and the loop (here under the PI controller, whose memory the loop
    carries; the adjoints of the tests above run the integral one): the eager NFE,
    accepted and rejected steps, step history (to 1e-9, see test_rk_solve_loop.py) and
    state (to 1e-12)."""
    torch.manual_seed(0)
    dyn = make_dynamics("hbnode")
    y0 = dyn.initial_state(1.0, torch.randn(6, 3))
    get_engine("rk").clear_caches()
    eager = _forward(dyn, y0, {"compile": False, "controller": "PI"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would warn
        sol = _forward(dyn, y0, {"compile": True, "controller": "PI"})
    assert sol.stats.nfe_forward == eager.stats.nfe_forward > 20
    assert sol.stats.steps_rejected == eager.stats.steps_rejected
    assert torch.allclose(
        torch.tensor(sol.stats.step_sizes), torch.tensor(eager.stats.step_sizes), rtol=1e-9
    )
    assert torch.allclose(sol.ys, eager.ys, rtol=0, atol=1e-12)
    (key,) = [
        key
        for key, r in get_engine("rk").runners._runners.items()
        if isinstance(r, compiled_module.CompiledRunner)
    ]
    # one program, under the PI controller, forward in time, no chunks: no other runner
    assert _kind(key) is Kind.START and key[-3:] == ("PI", 1.0, 0)
    get_engine("rk").clear_caches()


def test_max_steps_stops_the_compiled_loop(float64):
    """The loop's attempts are bounded on the device by what max_steps leaves: the solve
    fails after exactly max_steps attempts, as the host's loop does."""
    torch.manual_seed(0)
    dyn = make_dynamics("hbnode")
    y0 = dyn.initial_state(1.0, torch.randn(6, 3))
    for options in ({"compile": False}, {"compile": True}):
        options["controller"] = "PI"  # the program of the test above, from the disk cache
        with pytest.raises(nno.SolverError, match="max_steps = 4") as info:
            _forward(dyn, y0, options, max_steps=4)
        stats = info.value.stats
        assert info.value.reason == "max_steps"
        assert stats.steps_accepted + stats.steps_rejected == 4
        assert stats.nfe_forward == 2 + 4 * 6  # the first-step rule, then 4 DP5 attempts
    get_engine("rk").clear_caches()


# -- a program never outlives what it captured ---------------------------------------------
def _sequential_model(kind: str):
    """A Nesterov model on a Sequential network (its activation a module of the tree)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    if kind == "nesterov":
        return nno.NesterovNODE(net, r=3.0)
    return nno.GNesterovNODE(net, r=3.0, sigma=torch.nn.Hardtanh(-5.0, 5.0))


def _set_r(dyn):
    dyn.r = 5.0


def _replace_xi(dyn):
    from nesterovnode.dynamics.base import Constant

    dyn.xi = Constant(0.5)


def _narrow_sigma(dyn):
    dyn.sigma.min_val, dyn.sigma.max_val = -0.5, 0.5


def _swap_sigma(dyn):
    dyn.sigma = torch.nn.Tanh()


def _swap_activation(dyn):
    dyn.f.net[1] = torch.nn.Softplus()


def _to_float32(dyn):
    dyn.float()


#: a change of a model after a solve, and the model it applies to
CHANGES = {
    "r": ("nesterov", _set_r),
    "xi replaced": ("nesterov", _replace_xi),
    "sigma's bounds": ("gnesterov", _narrow_sigma),
    "sigma swapped": ("gnesterov", _swap_sigma),
    "the network's structure": ("nesterov", _swap_activation),
    "dtype": ("nesterov", _to_float32),
}


def _compiled_after_a_change(change: str, options: dict):
    """(ys and gradient of the compiled solve after ``change``, the eager ones after it,
    the eager ones before it): an adjoint solve over [1, 1.5, 2] each time."""
    kind, apply = CHANGES[change]
    dyn = _sequential_model(kind).double()
    h0 = torch.randn(5, 3, dtype=torch.float64)
    before = _solve_and_grad(dyn, h0, {"compile": False})
    _solve_and_grad(dyn, h0, options)  # compiles the programs of the model as it was
    apply(dyn)
    dtype = next(dyn.parameters()).dtype
    h0 = h0.to(dtype)
    after = _solve_and_grad(dyn, h0, {"compile": False})
    compiled = _solve_and_grad(dyn, h0, options)
    return compiled, after, before


def test_a_compiled_solve_after_r_changes_gives_the_new_models_numbers(float64):
    """NesterovNODE.r 3 -> 5 after a compiled solve: the next compiled solve equals the
    eager solve with r = 5 to 1e-12, not the one with r = 3 (the compiled program once
    kept r = 3 baked in). Forward solves here (the model and settings of the "steps" test
    above: its r = 3 program comes from the disk cache); the slow test below checks every
    change, forward and adjoint, on every compiled path."""
    get_engine("rk").clear_caches()
    dyn = make_dynamics("nesterovnode")
    y0 = dyn.initial_state(1.0, torch.randn(5, 3))

    def forward(compile):
        with torch.no_grad():
            options = {"compile": compile}
            return nno.solve(dyn, y0, [1.0, 1.5, 2.0], rtol=1e-6, atol=1e-6, options=options).ys

    y3 = forward(False)
    assert torch.allclose(forward("steps"), y3, rtol=0, atol=1e-12)
    dyn.r = 5.0
    y5 = forward(False)
    assert (y5 - y3).abs().max() > 1e-2  # r changed the solution...
    assert torch.allclose(forward("steps"), y5, rtol=0, atol=1e-12)  # ...and the program saw it
    get_engine("rk").clear_caches()


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize(
    "options",
    [{"compile": True}, {"compile": True, "loop": "host"}, {"compile": "steps"}],
    ids=["compiled loop", "host loop", "steps"],
)
def test_a_compiled_solve_after_any_change_of_the_model_gives_its_new_numbers(
    change, options, float64
):
    """Each change of ``CHANGES`` after a compiled solve, on each compiled path: the next
    compiled solve gives the changed model's eager numbers to round-off."""
    get_engine("rk").clear_caches()
    (yc, gc, nfe_c), (ye, ge, nfe_e), (y0, _, _) = _compiled_after_a_change(change, options)
    if change != "dtype":
        assert (ye - y0).abs().max() > 1e-4
    assert nfe_c == nfe_e
    tol = 1e-5 if change == "dtype" else 1e-12  # float32 states: its round-off
    assert torch.allclose(yc, ye, rtol=0, atol=tol)
    assert torch.allclose(gc, ge, rtol=1e-4 if change == "dtype" else 1e-10, atol=tol)
    get_engine("rk").clear_caches()
