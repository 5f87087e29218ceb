#!/usr/bin/env bash
# Table 2, CIFAR-10 (7 models) and Table 3 (GNesterovNODE, r = 3, 5, 10), at the paper's
# settings (DP5 at 1e-5, adjoint, Adam, batch 256, 40 epochs) on one GPU.
# ./cifar10_table2.sh /path/containing/cifar-10-batches-py [out [compare options]]
# (e.g. --executor ray --address auto: the runs over a Ray cluster's GPUs, docs/cluster.md)
set -euo pipefail
data=${1:?usage: $0 CIFAR10_DIR [OUT_DIR [compare options]]}
out=${2:-results/cifar10}
nesterovnode compare cifar10 --paper --device cuda --data-dir "$data" --out "$out" --resume "${@:3}"
for r in 3 5 10; do
  nesterovnode compare cifar10 --paper --device cuda --data-dir "$data" \
    --models gnesterovnode --r "$r" --out "$out-r$r" --resume "${@:3}"
done
