"""Fig. 3 of the paper over seeds: do the Nesterov models take fewer NFE than the others?

The paper (point cloud): "Nesterov models reach zero training loss with fewer forward and
backward NFEs than NODE, ANODE and HBNODE", and "especially the GNesterovNODE require
significantly fewer NFEs". This script reads a point-cloud comparison (``nesterovnode
compare pointcloud --paper``: 7 models × 50 seeds × 200 epochs) and judges the claim
seed by seed with ``nesterovnode.runs.statistics``:

- per model: mean ± std and median [q25, q75] over the finished runs of the forward and
  backward NFE per batch (mean over epochs), the final training loss, the cumulative
  forward + backward NFE per batch until the loss first falls below ``--threshold``
  (1e-3: "zero"), and the fraction of runs whose final loss is below it;
- paired, NesterovNODE and GNesterovNODE against NODE, ANODE, HBNODE and GHBNODE (and
  GNesterovNODE against NesterovNODE, for "especially"), on the seeds both finished: the
  geometric-mean ratio with its Student-t and bootstrap 95 % intervals, the mean
  difference, how many seeds favour A, the sign test's and Wilcoxon's p;
- a verdict per claim: "fewer X than B" holds when the ratio's t interval lies below 1.
  The Fig. 3 claim holds for a model when it takes fewer forward and fewer backward NFE
  than each of NODE, ANODE and HBNODE; the line says so on the NFE to loss < threshold
  too.

Failed runs are counted, named and left out of every number.

    python experiments/pointcloud_statistics.py RESULTS_DIR [--out DIR] [--threshold 1e-3]

Writes into ``--out`` (default ``RESULTS_DIR/statistics``) ``statistics.json``,
``statistics.md`` (the tables and verdicts), ``nfe_boxplots.png`` (per-run mean forward
and backward NFE per model, log axis) and ``seen.txt``, and prints the verdicts. It trains
nothing: ``--paper``, ``--seed`` and ``--threads`` have no effect here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from nesterovnode.io import read_json, write_json_atomic, write_text_atomic  # noqa: E402
from nesterovnode.plotting import color, label, new_figure, save  # noqa: E402
from nesterovnode.runs import statistics as S  # noqa: E402

NESTEROV = ("nesterovnode", "gnesterovnode")
#: the models the paper's Fig. 3 claim names, then GHBNODE (in the tables, not the claim)
CLAIMED = ("node", "anode", "hbnode")
OTHERS = (*CLAIMED, "ghbnode")
PAIRS = [(a, b) for a in NESTEROV for b in OTHERS] + [("gnesterovnode", "nesterovnode")]
KEYS = ("nfe_forward", "nfe_backward", "nfe_to_threshold")


def what(key: str, threshold: float) -> str:
    """How a paired quantity reads in a verdict."""
    return {
        "nfe_forward": "forward NFE",
        "nfe_backward": "backward NFE",
        "nfe_to_threshold": f"NFE to loss < {threshold:g}",
    }[key]


def _num(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


def _mean_std(d: dict[str, Any], spec: str) -> str:
    if d["n"] == 0:
        return "–"
    return _num(d["mean"], spec) + ("" if d["std"] is None else " ± " + _num(d["std"], spec))


def _median(d: dict[str, Any], spec: str) -> str:
    if d["n"] == 0:
        return "–"
    return f"{_num(d['median'], spec)} [{_num(d['q25'], spec)}, {_num(d['q75'], spec)}]"


def _ci(ci: list[float] | None, spec: str = ".3f") -> str:
    return "–" if ci is None else f"[{_num(ci[0], spec)}, {_num(ci[1], spec)}]"


def _p(p: float | None) -> str:
    return "–" if p is None else f"{p:.2g}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def model_tables(stats: dict[str, Any]) -> list[str]:
    """The per-model tables: mean ± std, then median [q25, q75]."""
    t = stats["threshold"]
    columns = (
        ("nfe_forward", "forward NFE", ".1f"),
        ("nfe_backward", "backward NFE", ".1f"),
        ("final_loss", "final loss", ".3g"),
        ("nfe_to_threshold", f"NFE to loss < {t:g}", ".0f"),
        ("epoch_to_threshold", f"epoch of loss < {t:g}", ".1f"),
    )
    head = ["model", "finished", "failed"] + [c[1] for c in columns]
    means, medians = [], []
    for name, m in stats["models"].items():
        first = [label(name), str(m["finished"]), str(m["failed"])]
        means.append(
            first
            + [_mean_std(m[k], s) for k, _, s in columns]
            + [f"{m['reached']}/{m['finished']}", _num(m["final_below_fraction"], ".2f")]
        )
        medians.append(first + [_median(m[k], s) for k, _, s in columns])
    return [
        "## Per model: mean ± std (ddof = 1) over the finished runs",
        "",
        *_table(head + ["reached", f"final loss < {t:g}"], means),
        "",
        "## Per model: median [25 %, 75 %] over the finished runs",
        "",
        *_table(head, medians),
    ]


def paired_tables(stats: dict[str, Any]) -> list[str]:
    """One table per paired quantity, one row per pair."""
    lines: list[str] = []
    conf = f"{100 * stats['confidence']:g} %"
    for key in KEYS:
        rows = []
        for p in (p for p in stats["paired"] if p["quantity"] == key):
            r, d, v = p["ratio"], p["difference"], p["verdict"]
            counts = f"{p['a_less']}/{p['n']}" + (f" ({p['ties']} tied)" if p["ties"] else "")
            rows.append(
                [
                    f"{label(p['a'])} vs {label(p['b'])}",
                    str(p["n"]) + _left_out(p),
                    _num(r["geometric_mean"], ".3f"),
                    _ci(r["t_ci"]),
                    _ci(r["bootstrap_ci"]),
                    "–" if d["mean"] is None else f"{d['mean']:.1f} {_ci(d['t_ci'], '.1f')}",
                    counts,
                    _p(p["sign_test_p"]),
                    _p(p["wilcoxon_p"]),
                    f"{_answer(v)} ({v['reason']})",
                ]
            )
        head = [
            "A vs B",
            "seeds",
            "ratio A/B",
            f"{conf} t-CI",
            f"{conf} bootstrap CI",
            f"A − B [{conf} t-CI]",
            "A < B",
            "sign p",
            "Wilcoxon p",
            "A fewer?",
        ]
        lines += ["", f"## Paired: {what(key, stats['threshold'])}", "", *_table(head, rows)]
    return lines


def _left_out(p: dict[str, Any]) -> str:
    """What a pair's seed count leaves out, in a table cell."""
    words = {
        "failed": "failed",
        "empty": "without epochs",
        "unpaired": "in one model only",
        "only_a_reached": f"only {label(p['a'])} reached",
        "only_b_reached": f"only {label(p['b'])} reached",
        "neither_reached": "neither reached",
    }
    ex = p["excluded"]
    parts = [f"{len(ex[k])} {words[k]}" for k in words if ex.get(k)]
    return f" ({', '.join(parts)})" if parts else ""


def _answer(v: dict[str, Any]) -> str:
    return {True: "yes", False: "no", None: "undetermined"}[v["holds"]]


def claim_line(stats: dict[str, Any], pair: dict[str, Any]) -> str:
    """ "A: fewer X than B: yes/no (ratio, CI, seeds)"."""
    r, v = pair["ratio"], pair["verdict"]
    answer = "yes" if v["holds"] else f"{_answer(v)}, {v['reason']}"
    return (
        f"{label(pair['a'])}: fewer {what(pair['quantity'], stats['threshold'])} than "
        f"{label(pair['b'])}: {answer} (ratio {_num(r['geometric_mean'], '.3f')}, "
        f"{100 * stats['confidence']:g} % CI {_ci(r['t_ci'])}, bootstrap {_ci(r['bootstrap_ci'])}, "
        f"{pair['n']} seeds)"
    )


def fig3_claims(stats: dict[str, Any]) -> dict[str, dict[str, bool | None]]:
    """Per Nesterov model: whether the Fig. 3 claim holds on per-batch NFE (fewer forward
    and fewer backward than each of NODE, ANODE, HBNODE) and on the NFE to the threshold
    (fewer than each of them): False as soon as one verdict is no, else None when one is
    undetermined or a compared model is missing, else True."""
    found = {(p["a"], p["b"], p["quantity"]): p["verdict"]["holds"] for p in stats["paired"]}
    out = {}
    for a in NESTEROV:

        def holds(keys, a=a):
            verdicts = [found.get((a, b, k)) for b in CLAIMED for k in keys]
            if False in verdicts:
                return False
            return None if None in verdicts else True

        if a in stats["models"]:
            out[a] = {
                "per_batch": holds(("nfe_forward", "nfe_backward")),
                "to_threshold": holds(("nfe_to_threshold",)),
            }
    return out


def markdown(stats: dict[str, Any], source: Path, results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    solve = cfg.get("solve", {})
    failed = [f"{label(m)} seed {s}" for m, b in stats["models"].items() for s in b["failed_seeds"]]
    lines = [
        f"# Fig. 3 over seeds: {results.get('task', '?')}",
        "",
        f"Source: `{source}` ({cfg.get('epochs')} epochs, {cfg.get('seeds')} seeds, "
        f"{solve.get('solver')} at rtol {solve.get('rtol')}, {cfg.get('dtype')}; "
        f"commit {(results.get('git_commit') or 'not recorded')[:12]}).",
        "",
        f'Threshold ("zero" training loss): < {stats["threshold"]:g}. Failed runs: {len(failed)}'
        + (f" ({', '.join(failed)})" if failed else "")
        + ", left out of every number.",
        "",
        *model_tables(stats),
        *paired_tables(stats),
        "",
        "## Verdicts",
        "",
        *(f"- {claim_line(stats, p)}" for p in stats["paired"]),
        "",
        *(f"- {line}" for line in fig3_lines(stats)),
        "",
        "## What the numbers are",
        "",
        "- NFE: function evaluations per batch (forward solve; backward: the adjoint solve); "
        "forward/backward NFE: a run's mean over its epochs.",
        f"- NFE to loss < {stats['threshold']:g}: forward + backward NFE per batch summed over "
        "the epochs up to and including the first whose training loss (mean over its "
        "batches) falls below the threshold; over the runs that reached it (reached: how "
        "many). Every model has the same batches per epoch, so its ratios are ratios of "
        "total work.",
        "- Paired: the seeds both models finished (the same seed: the same data, batch order "
        "and initialisation seed); ratio A/B: the geometric mean of the per-seed ratios, "
        "exp(mean log(A/B)); t-CI: exp(mean ± t·sd/√n) of the log-ratios (Student t, n − 1 "
        f"degrees of freedom); bootstrap CI: percentile interval over "
        f"{stats['bootstrap']['resamples']} resamples of the seeds (RNG seed "
        f"{stats['bootstrap']['rng_seed']}); A − B: mean difference with its t-CI; A < B: "
        "seeds where A took less; sign p: two-sided binomial test over the untied seeds; "
        "Wilcoxon p: two-sided signed-rank test of the log-ratios. The seeds cell counts the "
        "seeds a pair leaves out (failed, in one model only, or for the NFE to the "
        "threshold those where one or neither run reached it); statistics.json names them.",
        "- A fewer?: yes when the t-CI of the ratio lies below 1; undetermined with fewer "
        "than 2 paired seeds.",
    ]
    return "\n".join(lines) + "\n"


def fig3_lines(stats: dict[str, Any]) -> list[str]:
    """The Fig. 3 claim per Nesterov model, on both readings."""
    names = "/".join(label(b) for b in CLAIMED)
    missing = [label(b) for b in CLAIMED if b not in stats["models"]]
    why = f"{', '.join(missing)} not in the results" if missing else "too few paired seeds"
    word = {True: "holds", False: "does NOT hold", None: f"cannot be judged ({why})"}
    return [
        f"Fig. 3 claim for {label(a)} (fewer forward and backward NFE per batch than "
        f"{names}): {word[c['per_batch']]}; fewer NFE to loss < {stats['threshold']:g}: "
        f"{word[c['to_threshold']]}"
        for a, c in fig3_claims(stats).items()
    ]


def plot(results: dict[str, Any], stats: dict[str, Any], path: Path) -> Path:
    """Box plots of the per-run mean forward and backward NFE per batch, one box per model
    (finished runs), log axis."""
    from matplotlib.ticker import ScalarFormatter

    fig, axes = new_figure(1, 2, figsize=(11.0, 4.2))
    models = [m for m in stats["runs"] if stats["runs"][m]]
    for ax, key in zip(axes, ("nfe_forward", "nfe_backward")):
        data = [[q[key] for q in stats["runs"][m].values()] for m in models]
        boxes = ax.boxplot(
            data, patch_artist=True, widths=0.6, showfliers=False, medianprops={"color": "k"}
        )
        ax.set_xticks(range(1, len(models) + 1), [label(m) for m in models], rotation=30)
        for i, (box, m, values) in enumerate(zip(boxes["boxes"], models, data)):
            box.set_facecolor(color(m, i))
            box.set_alpha(0.45)
            # every run as a point, spread sideways (fixed offsets) so equal values show
            offsets = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else [0.0]
            ax.plot(i + 1 + np.asarray(offsets), values, ".", color=color(m, i), ms=4)
        ax.set_yscale("log")
        # NFE span less than a decade: plain numbers on the ticks, not powers of ten
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_ylabel(f"{what(key, stats['threshold'])} per batch, mean over epochs")
        ax.grid(True, which="both", alpha=0.3)
    seeds = max((len(v) for v in stats["runs"].values()), default=0)
    title = (
        f"{results.get('task', '?')}: NFE per run over {seeds} seeds "
        f"(box: quartiles, line: median, whiskers: 1.5 IQR, dots: runs)"
    )
    return save(fig, path, title)


def main(argv: list[str] | None = None) -> dict:
    p = C.parser(__doc__.splitlines()[0], "")
    p.set_defaults(out=None)  # RESULTS_DIR/statistics
    p.add_argument(
        "results", help="the comparison's folder, or its results.json (or results.json.gz)"
    )
    p.add_argument("--threshold", type=float, default=S.THRESHOLD, help="'zero' loss")
    p.add_argument("--confidence", type=float, default=S.CONFIDENCE)
    p.add_argument("--resamples", type=int, default=S.BOOTSTRAP, help="bootstrap resamples")
    p.add_argument("--no-plot", action="store_true", help="no box-plot PNG")
    args = p.parse_args(argv)
    source = Path(args.results)
    if source.is_dir():  # a committed measurement holds results.json.gz
        plain = source / "results.json"
        source = plain if plain.exists() else source / "results.json.gz"
    if not source.exists():
        C.die(f"no results at {source}")
    results = read_json(source)
    if not results.get("models"):
        C.die(f"{source} holds no runs")
    out = Path(args.out) if args.out else source.parent / "statistics"
    stats = S.statistics(
        results,
        PAIRS,
        KEYS,
        threshold=args.threshold,
        confidence=args.confidence,
        resamples=args.resamples,
    )
    stats["source"] = str(source)
    stats["fig3"] = fig3_claims(stats)
    write_json_atomic(out / "statistics.json", stats)
    write_text_atomic(out / "statistics.md", markdown(stats, source, results))
    wrote = [out / "statistics.json", out / "statistics.md"]
    if not args.no_plot:
        wrote.append(plot(results, stats, out / "nfe_boxplots.png"))
    n = max((m["finished"] for m in stats["models"].values()), default=0)
    failed = sum(m["failed"] for m in stats["models"].values())
    C.report(
        [
            f"Fig. 3 over seeds from {source} (up to {n} finished runs per model, {failed} "
            f"failed and left out):",
            *(f"  {claim_line(stats, p)}" for p in stats["paired"]),
            *(f"  Seen: {line}" for line in fig3_lines(stats)),
            f"  wrote {', '.join(str(w) for w in wrote)}",
        ],
        out,
    )
    return stats


if __name__ == "__main__":
    main()
