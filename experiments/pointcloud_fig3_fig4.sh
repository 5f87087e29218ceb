#!/usr/bin/env bash
# Fig. 3 and 4 of the paper: the point-cloud comparison under the paper's protocol
# (200 epochs, 5 seeds, DP5 at tolerance 1e-7, t from 1 to 2, Adam lr 1e-2, batch 50).
set -euo pipefail
out=${1:-results/pointcloud_paper}
nesterovnode compare pointcloud --paper --out "$out" --resume
