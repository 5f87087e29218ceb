#!/usr/bin/env bash
# GPU check of the MNIST path, sized for one device call (ends within ~9 minutes).
#
#   (i)   the machine: nvidia-smi -L, python, torch, CUDA, cuDNN, torchdiffeq versions;
#   (ii)  benchmarks/graph_check.py: the rk engine's CUDA-graph path against its eager
#         path and torchdiffeq on real MNIST batches (NFE, loss, gradients); GRAPHS_OK;
#   (iii) benchmarks/images.py --device cuda on real MNIST batches, once on the torch
#         engine (torchdiffeq, the published code's solver), once on the peer torchode
#         (when its wheels were carried, see below; h(T) checked against rk first) and
#         once on the rk engine (CUDA graphs): s/iteration, images/s, forward/backward NFE
#         per batch, share of time in the network f, for hbnode, nesterovnode,
#         gnesterovnode, node; then once more on the rk engine with graphs of GRAPH_CHUNK
#         attempts (the step-size control on the device, one host read per chunk);
#   (iv)  `nesterovnode train mnist` on the GPU for GNesterovNODE, NesterovNODE and HBNODE
#         at the paper's settings (DP5 at rtol = atol = 1e-5 on the rk engine, adjoint,
#         batch 64, Adam at lr 5e-4: the task defaults), one whole epoch each (938
#         iterations; cut to MAX_ITERS when the graph check failed), then test accuracy on
#         the 10000-image test set; per model: test accuracy, s/iteration, images/s, NFE.
#
# Every step runs under `timeout`, capped by what is left of a DEADLINE_S budget (default
# 530 s) measured from the script's start, so the script ends in time even when a step
# hangs; a step with too little time left is skipped and says so.
#
# Data: MNIST's four IDX .gz files in a git-ignored folder of the checkout that travels
# with `carry` (../shared beside the checkout does not travel). Here, once:
#
#     mkdir -p .device/mnist && cp ../shared/data/mnist/*-ubyte.gz .device/mnist/
#     .venv/bin/pip download --no-deps -d .device/wheels \
#         torchode==1.0.1 torchtyping==0.1.5 typeguard==2.13.3
#
# (.device/ is in .gitignore; the four files are ~11 MiB, the wheels 70 KiB). Then one
# device call:
#
#     run(command="OUT=$OUT bash benchmarks/gpu_mnist_check.sh",
#         carry=[".device/mnist", ".device/wheels"], timeout_s=600)
#
# The device has python3 with torch, torchdiffeq, tqdm, matplotlib, scipy and no network;
# the package runs from the checkout with PYTHONPATH=python, and the carried wheels
# (pure Python) are unpacked into a temporary folder on that path.
#
# Files written to $OUT: log.txt (everything printed, the graph check's output too),
# bench_images_torch.json, bench_images_torchode.json, bench_images.json (rk),
# bench_images_chunk.json (rk, graphs of GRAPH_CHUNK attempts), train_<model>.jsonl (the
# epoch record of each run: loss, accuracy, test_accuracy, nfe_forward, nfe_backward,
# seconds, iterations, samples_per_second = images/s) and summary.json (the table printed
# at the end).
#
# Knobs (environment): MNIST_DIR (default .device/mnist), DEVICE (cuda; cpu for a dry
# run), MAX_ITERS (0 = the whole epoch; 300 when the graph check failed), BENCH_ITERS
# (3; the rk engine runs 3x as many), BENCH_WARMUP (1), DEADLINE_S (530), MODELS
# ("gnesterovnode nesterovnode hbnode"), BENCH_MODELS ("hbnode,nesterovnode,gnesterovnode,node"), GRAPH_CHUNK (8).
#
# Dry run on a CPU with synthetic data (checks the script, not the GPU):
#     .venv/bin/python -c "from nesterovnode.data import write_synthetic_mnist as w; \
#         w('/tmp/m', n_train=256, n_test=64)"
#     PATH=.venv/bin:$PATH OUT=/tmp/out MNIST_DIR=/tmp/m DEVICE=cpu MAX_ITERS=2 \
#         BENCH_ITERS=1 BENCH_WARMUP=0 bash benchmarks/gpu_mnist_check.sh

set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-results/gpu_mnist_check}
MNIST_DIR=${MNIST_DIR:-.device/mnist}
DEVICE=${DEVICE:-cuda}
MAX_ITERS=${MAX_ITERS:-0}
BENCH_ITERS=${BENCH_ITERS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-1}
DEADLINE_S=${DEADLINE_S:-530}
MODELS=${MODELS:-"gnesterovnode nesterovnode hbnode"}
BENCH_MODELS=${BENCH_MODELS:-"hbnode,nesterovnode,gnesterovnode,node"}
GRAPH_CHUNK=${GRAPH_CHUNK:-8}
PY=${PYTHON:-python3}
RUNS=$(mktemp -d)  # checkpoints stay on the machine; only the logs go to $OUT

mkdir -p "$OUT"
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
WHEELS=${WHEELS:-.device/wheels}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE="$RUNS/site" && mkdir -p "$SITE"
  for whl in "$WHEELS"/*.whl; do "${PY}" -m zipfile -e "$whl" "$SITE"; done
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1

START=$(date +%s)
left() { echo $((DEADLINE_S - ($(date +%s) - START))); }
# step NAME CAP_S MIN_S CMD...: run CMD under timeout min(CAP_S, time left); skip it when
# less than MIN_S is left.
step() {
  local name=$1 cap=$2 min=$3
  shift 3
  local budget
  budget=$(left)
  ((budget > cap)) && budget=$cap
  if ((budget < min)); then
    echo "== $name: SKIPPED, ${budget}s left of the ${DEADLINE_S}s budget (needs ${min}s)"
    return 0
  fi
  echo "== $name (timeout ${budget}s, $(($(date +%s) - START))s elapsed)"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$budget" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "== $name: TIMED OUT after $((SECONDS - t0))s"
  elif ((rc != 0)); then
    echo "== $name: FAILED (exit $rc) after $((SECONDS - t0))s"
  else
    echo "== $name: done in $((SECONDS - t0))s"
  fi
  return 0
}

echo "== gpu_mnist_check: device=$DEVICE max_iters=$MAX_ITERS budget=${DEADLINE_S}s"
echo "== data: $MNIST_DIR"
ls -l "$MNIST_DIR" || echo "!! no MNIST at $MNIST_DIR: copy it and carry it (see the header)"

# (i) the machine
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
else
  echo "nvidia-smi: not found"
fi
step "versions" 60 5 "$PY" - <<'EOF'
import platform, torch, torchdiffeq
print("python", platform.python_version(), "| torch", torch.__version__,
      "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(),
      "| torchdiffeq", torchdiffeq.__version__)
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "| capability",
          torch.cuda.get_device_capability(0),
          "| tf32 conv", torch.backends.cudnn.allow_tf32,
          "| tf32 matmul", torch.backends.cuda.matmul.allow_tf32)
else:
    print("torch sees no CUDA device")
EOF

# (ii) the rk engine's CUDA graphs against its eager path and torchdiffeq (same batch)
step "benchmarks/graph_check.py" 120 30 "$PY" benchmarks/graph_check.py --device "$DEVICE" \
  --models "$BENCH_MODELS" --data-dir "$MNIST_DIR" --graph-chunk "$GRAPH_CHUNK" \
  | tee "$RUNS/graph_check.txt"
graphs_ok=0
grep -q GRAPHS_OK "$RUNS/graph_check.txt" 2>/dev/null && graphs_ok=1

# (iii) one iteration per model: forward + adjoint backward + Adam, on real MNIST batches,
# on torchdiffeq (the published code's solver) and on the rk engine (CUDA graphs)
step "benchmarks/images.py --engine torchdiffeq" 120 30 "$PY" benchmarks/images.py \
  --device "$DEVICE" --engine torchdiffeq --models "$BENCH_MODELS" --iters "$BENCH_ITERS" \
  --warmup "$BENCH_WARMUP" --data-dir "$MNIST_DIR" --json "$OUT/bench_images_torch.json"
if "$PY" -c "import torchode" 2>/dev/null; then
  step "benchmarks/images.py --engine torchode" 150 30 "$PY" benchmarks/images.py \
    --device "$DEVICE" --engine torchode --models "$BENCH_MODELS" --iters "$BENCH_ITERS" \
    --warmup "$BENCH_WARMUP" --data-dir "$MNIST_DIR" --json "$OUT/bench_images_torchode.json"
else
  echo "== benchmarks/images.py --engine torchode: SKIPPED, torchode not importable (carry $WHEELS)"
fi
step "benchmarks/images.py --engine rk" 120 30 "$PY" benchmarks/images.py \
  --device "$DEVICE" --engine rk --models "$BENCH_MODELS" --iters $((BENCH_ITERS * 3)) \
  --warmup $((BENCH_WARMUP + 1)) --data-dir "$MNIST_DIR" --json "$OUT/bench_images.json"
# the same with graphs of GRAPH_CHUNK attempts: the step-size control on the device, one
# host read per chunk instead of one per attempt (the rk engine's graph_chunk option)
step "benchmarks/images.py --engine rk --graph-chunk $GRAPH_CHUNK" 120 30 "$PY" \
  benchmarks/images.py --device "$DEVICE" --engine rk --graph-chunk "$GRAPH_CHUNK" \
  --models "$BENCH_MODELS" --iters $((BENCH_ITERS * 3)) --warmup $((BENCH_WARMUP + 1)) \
  --data-dir "$MNIST_DIR" --json "$OUT/bench_images_chunk.json"

# (iv) training at the paper's settings, one epoch per model (truncated to MAX_ITERS when
# the graphs failed and steps run eagerly: a whole epoch would not fit the budget)
iters=()
((graphs_ok == 0 && MAX_ITERS == 0)) && MAX_ITERS=300
((MAX_ITERS > 0)) && iters=(--max-iters "$MAX_ITERS")
for model in $MODELS; do
  step "train $model" 150 45 "$PY" -m nesterovnode.cli train mnist --model "$model" \
    --device "$DEVICE" --data-dir "$MNIST_DIR" --epochs 1 "${iters[@]}" \
    --out "$RUNS/$model" --no-progress
  [[ -f $RUNS/$model/log.jsonl ]] && cp "$RUNS/$model/log.jsonl" "$OUT/train_$model.jsonl"
done

# the table: one row per trained model (read from the logs; no torch needed)
"$PY" - "$OUT" $MODELS <<'EOF'
import json, sys
from pathlib import Path
out, models = Path(sys.argv[1]), sys.argv[2:]
rows = []
for m in models:
    path = out / f"train_{m}.jsonl"
    if not path.exists():
        print(f"{m}: no record (failed, timed out or skipped; see log.txt)")
        continue
    r = [json.loads(x) for x in path.read_text().splitlines() if x.strip()][-1]
    rows.append({
        "model": m, "iterations": r.get("iterations"), "loss": r["loss"],
        "train_accuracy": r["accuracy"], "test_accuracy": r.get("test_accuracy"),
        "s_per_iteration": r["seconds"] / r["iterations"] if r.get("iterations") else None,
        "images_per_second": r["samples_per_second"],
        "nfe_forward": r["nfe_forward"], "nfe_backward": r["nfe_backward"],
        "seconds": r["seconds"],
    })
summary = {"train": rows}
for key, name in (("bench", "bench_images.json"), ("bench_torch", "bench_images_torch.json"),
                  ("bench_torchode", "bench_images_torchode.json"),
                  ("bench_chunk", "bench_images_chunk.json")):
    bench = out / name
    if bench.exists():
        b = json.loads(bench.read_text())
        summary["environment"] = b["environment"]
        keys = ("model", "engine", "cuda_graphs", "graph_chunk", "s_per_iter", "images_per_s",
                "nfe_forward", "nfe_backward", "f_share")
        summary[key] = [{k: r.get(k) for k in keys}
                        for r in b["results"]]
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"\n{'model':<14}{'iters':>6}{'loss':>8}{'test acc':>9}{'s/it':>8}{'img/s':>8}"
      f"{'NFE f':>7}{'NFE b':>7}")
for r in rows:
    acc = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
    print(f"{r['model']:<14}{r['iterations']:>6}{r['loss']:>8.4f}{acc:>9}"
          f"{r['s_per_iteration']:>8.3f}{r['images_per_second']:>8.1f}"
          f"{r['nfe_forward']:>7.1f}{r['nfe_backward']:>7.1f}")
EOF
echo "== gpu_mnist_check: finished in $(($(date +%s) - START))s; files in $OUT"
rm -rf "$RUNS"
