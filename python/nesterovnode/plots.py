"""Pictures of runs: loss and NFE curves (mean ± std over seeds) and learned features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from .io import write_atomic

    path = Path(path)
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"))
    _pyplot().close(fig)
    return path


def curve_stats(models: dict, key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per model: (epochs, mean, std) of ``key`` over the runs (seeds), on the epochs all
    runs have."""
    out = {}
    for name, entry in models.items():
        runs = [r["epochs"] for r in entry["runs"] if r["epochs"]]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        values = np.array([[e[key] for e in r[:n]] for r in runs], dtype=float)
        epochs = np.array([e["epoch"] for e in runs[0][:n]])
        out[name] = (epochs, values.mean(axis=0), values.std(axis=0))
    return out


def plot_curve(models: dict, key: str, ylabel: str, path: Path, log: bool = False, title: str = ""):
    """One line per model with a ±std band over seeds, against epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, (epochs, mean, std) in curve_stats(models, key).items():
        color = COLORS.get(name)
        ax.plot(epochs, mean, label=LABELS.get(name, name), color=color, lw=1.6)
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_features(features: dict[str, np.ndarray], labels: np.ndarray, path: Path, title: str = ""):
    """Scatter of the learned features h(T) per model, coloured by class (the paper's Fig. 4).

    Features with more than two coordinates (ANODE) are shown by their first two.
    """
    plt = _pyplot()
    names = list(features)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        h = features[name]
        for cls, color in ((-1, "#1f77b4"), (1, "#d62728")):
            sel = labels == cls
            ax.scatter(h[sel, 0], h[sel, 1], s=9, color=color, label=f"y = {cls:+d}")
        extra = " (dims 1–2)" if h.shape[1] > 2 else ""
        ax.set_title(LABELS.get(name, name) + extra, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
