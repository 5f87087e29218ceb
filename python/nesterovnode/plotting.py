"""Every picture the package draws, in one style: runs (loss, NFE and accuracy curves over
seeds: mean ± std, geometric on log axes; learned features), solver comparison
(work-precision) and stiffness (step sizes; spectra, stiffness ratios and spectral radii
of several models).

Figures are matplotlib ``Figure``s drawn by the Agg canvas (no pyplot, no GUI backend, no
global state) and written as PNG atomically (``io.write_atomic``): a reader sees the old
picture or the whole new one. Models have fixed colours and labels (``COLORS``,
``LABELS``), so every figure of a comparison matches; other series take the default
colour cycle. Every series also has its own marker and dash (``line_style``), so curves
that coincide stay visible. Every ``plot_*`` function returns the path it wrote.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import write_atomic

#: Colours per model, fixed so every figure of a comparison matches.
COLORS = {
    "node": "#7f7f7f",
    "anode": "#8c564b",
    "sonode": "#9467bd",
    "hbnode": "#1f77b4",
    "ghbnode": "#17becf",
    "nesterovnode": "#d62728",
    "gnesterovnode": "#ff7f0e",
}
LABELS = {
    "node": "NODE",
    "anode": "ANODE",
    "sonode": "SONODE",
    "hbnode": "HBNODE",
    "ghbnode": "GHBNODE",
    "nesterovnode": "NesterovNODE",
    "gnesterovnode": "GNesterovNODE",
}
#: Markers and line styles per model, so that curves that coincide (NODE and ANODE at the
#: same NFE floor) stay visible: each model's line has its own dash and marks.
MARKERS = {
    "node": "o",
    "anode": "s",
    "sonode": "^",
    "hbnode": "v",
    "ghbnode": "D",
    "nesterovnode": "P",
    "gnesterovnode": "X",
}
LINESTYLES = ("-", "--", "-.", ":")
_MARKER_CYCLE = ("o", "s", "^", "v", "D", "P", "X", "*")
DPI = 120


# -- style -----------------------------------------------------------------------------------
def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.2), squeeze: bool = True):
    """``fig, axes``: a Figure drawn by the Agg canvas; write it with ``save``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig, path: str | Path, title: str | None = None) -> Path:
    """Title (when given), tight layout, then the PNG at ``path``, written atomically."""
    path = Path(path)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def color(name: str, i: int) -> str:
    """A model's fixed colour, else the i-th of the default cycle."""
    return COLORS.get(name, f"C{i % 10}")


def label(name: str) -> str:
    return LABELS.get(name, name)


def line_style(name: str, i: int, points: int, series: int) -> dict:
    """Line2D keywords that tell the i-th of ``series`` lines apart even where it lies on
    another: a model's fixed marker (else the i-th of a cycle) and the i-th dash. A line of
    at least 2 × ``series`` points gets about 8 marks (at least one every ``series``
    points), each series' shifted by its share of the spacing, so the marks of coinciding
    lines fall side by side, not on each other; a shorter line is
    marked at every point with hollow marks, the earlier series' larger, so that marks on
    one point show one inside the other."""
    marker = MARKERS.get(name, _MARKER_CYCLE[i % len(_MARKER_CYCLE)])
    dash = LINESTYLES[i % len(LINESTYLES)]
    if points >= 2 * series:
        share = max(1, points // (8 * series))
        every = (i * share, series * share)
        return {"marker": marker, "linestyle": dash, "markevery": every, "ms": 4}
    return {"marker": marker, "linestyle": dash, "ms": 4 + 1.2 * (series - 1 - i), "mfc": "none"}


def _finish(ax, legend: bool = True) -> None:
    ax.grid(True, which="both", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


# -- runs ------------------------------------------------------------------------------------
def _finished(run: dict) -> bool:
    return run.get("status", "finished") == "finished"


def spread(values: np.ndarray, log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, low, high)`` over axis 0 (the seeds) of ``values``: on a linear axis the
    mean and mean ± std; on a log axis (``log``) the geometric mean and the geometric band
    exp(mean ± std of log), which stays positive where mean − std would not (values ≤ 0,
    which a log axis cannot show, are left out)."""
    values = np.asarray(values, dtype=float)
    if not log:
        mean, std = values.mean(axis=0), values.std(axis=0)
        return mean, mean - std, mean + std
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(values > 0, values, np.nan))
    mean, std = np.nanmean(logs, axis=0), np.nanstd(logs, axis=0)
    return np.exp(mean), np.exp(mean - std), np.exp(mean + std)


def curve_stats(
    models: dict, key: str, log: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per model: ``(epochs, centre, low, high)`` of ``key`` over the runs (seeds) that
    finished, on the epochs all of them have (``spread``: mean ± std, or with ``log`` the
    geometric mean and band)."""
    out = {}
    for name, entry in models.items():
        runs = [r["epochs"] for r in entry["runs"] if r["epochs"] and _finished(r)]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        values = np.array([[e[key] for e in r[:n]] for r in runs], dtype=float)
        epochs = np.array([e["epoch"] for e in runs[0][:n]])
        out[name] = (epochs, *spread(values, log))
    return out


def band_title(seeds: int, log: bool) -> str:
    """What a curve plot's line and shading are."""
    if seeds <= 1:
        return "one seed"
    if log:
        return f"line: geometric mean, shaded: ×/÷ geometric std over {seeds} seeds"
    return f"line: mean, shaded: ± std over {seeds} seeds"


def plot_curve(
    models: dict, key: str, ylabel: str, path: Path, log: bool = False, title: str = ""
) -> Path:
    """One line per model over the seeds that finished, with a shaded band, against epoch
    (integer ticks): mean ± std, or on a log axis (``log``) the geometric mean and band
    (``spread``), which never falls below zero. Each model has its own marker and dash
    (``line_style``), so coinciding curves stay visible; a failed run is a thin dotted
    line ending in a cross at its last finished epoch."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = new_figure()
    stats = curve_stats(models, key, log)
    index = {name: i for i, name in enumerate(models)}
    for name, (epochs, centre, low, high) in stats.items():
        i = index[name]
        c = color(name, i)
        style = line_style(name, i, len(epochs), len(models))
        ax.plot(epochs, centre, label=label(name), color=c, lw=1.6, **style)
        ax.fill_between(epochs, low, high, color=c, alpha=0.18, lw=0)
    for i, (name, entry) in enumerate(models.items()):
        for r in entry["runs"]:
            if _finished(r) or not r["epochs"] or key not in r["epochs"][0]:
                continue
            xs = [e["epoch"] for e in r["epochs"]]
            ys = [e[key] for e in r["epochs"]]
            c = color(name, i)
            ax.plot(xs, ys, ":", color=c, lw=1.0)
            ax.plot(
                xs[-1:],
                ys[-1:],
                "x",
                color=c,
                ms=8,
                label=f"{label(name)} seed {r['seed']} failed in epoch {xs[-1] + 1}",
            )
    seeds = max((len([r for r in e["runs"] if _finished(r)]) for e in models.values()), default=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=2, title=band_title(seeds, log), title_fontsize=7)
    return save(fig, path)


def plot_features(
    features: dict[str, np.ndarray], labels: np.ndarray, path: Path, title: str = ""
) -> Path:
    """Scatter of the learned features h(T) per model, coloured by class (the paper's Fig. 4).

    Features with more than two coordinates (ANODE) are shown by their first two; axes
    are labelled h₁(T), h₂(T); a panel whose features reach far out (|h| > 100) says so
    in its title (each panel has its own scale).
    """
    names = list(features)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = new_figure(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        h = features[name]
        for cls, c in ((-1, "#1f77b4"), (1, "#d62728")):
            sel = labels == cls
            ax.scatter(h[sel, 0], h[sel, 1], s=9, color=c, label=f"y = {cls:+d}")
        extra = " (dims 1–2)" if h.shape[1] > 2 else ""
        reach = float(np.nanmax(np.abs(h[:, :2]))) if h.size else 0.0
        if reach > 100:
            extra += f"\n|h| up to {reach:.0e}: blown up"
        ax.set_title(label(name) + extra, fontsize=9)
        ax.set_xlabel("h₁(T)", fontsize=8)
        ax.set_ylabel("h₂(T)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    return save(fig, path, title)


def write_plots(
    results: dict, out: Path, features=None, labels=None, features_at=None
) -> list[Path]:
    """A comparison's pictures: loss and NFE curves against epoch, test accuracy when the
    runs have it, the feature scatter when ``features`` (by model, after the last epoch,
    ``results["config"]["epochs"]``) are given (features.png), and one per epoch E of
    ``features_at`` ({E: {model: h}}, the runs' snapshots) as features_epochE.png."""
    out = Path(out)
    models = results["models"]
    task = results["task"] + run_scope(results)
    paths = [
        plot_curve(
            models,
            "loss",
            "training loss",
            out / "loss.png",
            log=True,
            title=f"{task}: training loss",
        ),
        plot_curve(
            models,
            "nfe_forward",
            "forward NFE per batch",
            out / "nfe_forward.png",
            log=True,
            title=f"{task}: forward NFE",
        ),
        plot_curve(
            models,
            "nfe_backward",
            "backward NFE per batch",
            out / "nfe_backward.png",
            log=True,
            title=f"{task}: backward NFE",
        ),
    ]
    for key, name in (("test_accuracy", "test accuracy"), ("test_mse", "test MSE")):
        if any(key in r["epochs"][0] for m in models.values() for r in m["runs"] if r["epochs"]):
            paths.append(
                plot_curve(
                    models,
                    key,
                    name,
                    out / f"{key}.png",
                    log=key == "test_mse",
                    title=f"{task}: {name}",
                )
            )
    drawn = [("features.png", results.get("config", {}).get("epochs"), features)]
    drawn += [(f"features_epoch{e}.png", e, at) for e, at in sorted((features_at or {}).items())]
    for name, epochs, by_model in drawn:
        if by_model:
            after = f" after {epochs} epoch{'s' if epochs != 1 else ''}" if epochs else ""
            paths.append(
                plot_features(
                    by_model,
                    labels,
                    out / name,
                    title=f"{task}: learned features h(T) of the {len(labels)} training "
                    f"points{after}, seed 0",
                )
            )
    return paths


def run_scope(results: dict) -> str:
    """What a comparison covered, for titles: quick-check subsets, truncated epochs and
    models left out are named ("" for a full run)."""
    cfg = results.get("config", {})
    parts = []
    if cfg.get("subset"):
        parts.append(f"subset of {cfg['subset']} samples")
    if cfg.get("max_iters"):
        parts.append(f"≤ {cfg['max_iters']} iterations/epoch")
    if results.get("configuration", {}).get("paper_protocol") is False:
        parts.append(
            f"{cfg.get('epochs')} epochs, {cfg.get('seeds')} seed(s), not the paper's protocol"
        )
    return f" ({'; '.join(parts)})" if parts else ""


# -- solver comparison -----------------------------------------------------------------------
def plot_work_precision(comparison, path, title: str | None = None) -> Path:
    """Error against forward NFE, log-log, one line per solver, points labelled by
    tolerance (or dt); ``comparison`` is a ``diagnostics.Comparison`` or its rows."""
    rows = comparison.rows if hasattr(comparison, "rows") else list(comparison)
    fig, ax = new_figure(figsize=(6.5, 4.5))
    by_solver: dict[str, list] = {}
    for r in rows:
        if r.status == "ok" and r.nfe > 0 and math.isfinite(r.error):
            by_solver.setdefault(r.solver, []).append(r)
    for i, (name, rs) in enumerate(by_solver.items()):
        rs = sorted(rs, key=lambda r: r.nfe)
        err = [max(r.error, 1e-17) for r in rs]
        ax.loglog([r.nfe for r in rs], err, "o-", color=f"C{i % 10}", label=name)
        for r, e in zip(rs, err):
            text = f"{r.tol:.0e}" if r.tol is not None else f"dt={r.dt:.2g}"
            ax.annotate(text, (r.nfe, e), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("forward NFE")
    ax.set_ylabel("max |y - y_ref|")
    ax.set_title(title or "work-precision")
    _finish(ax)
    return save(fig, path)


# -- stiffness -------------------------------------------------------------------------------
def plot_step_sizes(report, path, title: str | None = None) -> Path:
    """Accepted step sizes against time (rejected attempts as crosses) of a
    ``diagnostics.StiffnessReport``."""
    fig, ax = new_figure(figsize=(6, 3.5))
    ax.semilogy(report.step_times, report.step_sizes, ".-", label="accepted")
    if report.rejected_times:
        ax.semilogy(report.rejected_times, report.rejected_sizes, "x", color="C3", label="rejected")
    ax.set_xlabel("t")
    ax.set_ylabel("step size h")
    ax.set_title(title or f"{report.solver} on {report.engine}")
    _finish(ax)
    return save(fig, path)


def plot_spectra(reports: dict, path, title: str | None = None) -> Path:
    """Compare models (``{name: StiffnessReport}``): eigenvalues at the last time
    (complex plane), stiffness ratio, spectral radius and step size against time."""
    fig, axes = new_figure(2, 2, figsize=(11, 8))
    ax_eig, ax_ratio, ax_rho, ax_h = axes.ravel()
    for i, (name, rep) in enumerate(reports.items()):
        c = color(name, i)
        last = rep.points[-1]
        re = [x for s in last.samples for x in s.eig_real]
        im = [x for s in last.samples for x in s.eig_imag]
        if re:
            ax_eig.scatter(re, im, s=6, alpha=0.5, color=c, label=label(name))
        ax_ratio.plot(
            rep.times,
            [p.stiffness_ratio for p in rep.points],
            "o-",
            color=c,
            label=f"{label(name)} (max)",
        )
        ax_ratio.plot(
            rep.times, [p.mean_stiffness_ratio for p in rep.points], "--", color=c, alpha=0.6
        )
        ax_rho.plot(
            rep.times, [p.spectral_radius for p in rep.points], "o-", color=c, label=label(name)
        )
        if rep.step_times:
            ax_h.plot(rep.step_times, rep.step_sizes, ".-", color=c, label=label(name))
    ax_eig.axvline(0.0, color="k", lw=0.5)
    ax_eig.set_xlabel("Re λ")
    ax_eig.set_ylabel("Im λ")
    ax_eig.set_title("eigenvalues of ∂f/∂state at T")
    ax_ratio.set_yscale("log")
    ax_ratio.set_xlabel("t")
    ax_ratio.set_title("max|Re λ|/min|Re λ| (solid: max, dashed: mean)")
    ax_rho.set_xlabel("t")
    ax_rho.set_title("spectral radius ρ")
    ax_h.set_yscale("log")
    ax_h.set_xlabel("t")
    ax_h.set_title("accepted step size")
    for ax in axes.ravel():
        _finish(ax)
    return save(fig, path, title)


__all__ = [
    "COLORS",
    "LABELS",
    "MARKERS",
    "band_title",
    "curve_stats",
    "line_style",
    "new_figure",
    "plot_curve",
    "plot_features",
    "plot_spectra",
    "plot_step_sizes",
    "plot_work_precision",
    "run_scope",
    "save",
    "spread",
    "write_plots",
]
