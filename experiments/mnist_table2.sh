#!/usr/bin/env bash
# Table 2, MNIST: the seven models at the paper's settings (DP5 at 1e-5, adjoint, Adam,
# batch 64, 40 epochs), one after another on one GPU. Pass the folder with the four IDX
# files (train-images-idx3-ubyte.gz, ...): ./mnist_table2.sh /path/to/mnist [out]
# More options after OUT go to compare: --executor ray --address auto spreads the runs
# over a Ray cluster's GPUs, one each (docs/cluster.md).
set -euo pipefail
data=${1:?usage: $0 MNIST_DIR [OUT_DIR [compare options]]}
out=${2:-results/mnist}
nesterovnode compare mnist --paper --device cuda --data-dir "$data" --out "$out" --resume "${@:3}"
