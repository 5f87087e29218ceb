#!/usr/bin/env bash
# Fig. 3 and 4 of the paper: the point-cloud comparison with --paper. From the paper: DP5
# at tolerance 1e-7, t from 1 to 2, Adam, xi = 2 for the G models, 50 runs per model. Not
# in the paper: the SmoothL1 loss, lr 1e-2 and batch 50 (the published code's choices, as
# this project records them), and 200 epochs, float64 (stated choices; tasks/pointcloud.py).
# In OUT: loss.png, nfe_forward.png, nfe_backward.png (Fig. 3), features_epoch100.png
# (Fig. 4: the features after 100 epochs, as the paper draws them) and features.png (after
# 200), results.json and runs/.
# More options after OUT go to compare, e.g. on a Ray cluster (docs/cluster.md):
#   ./pointcloud_fig3_fig4.sh OUT --executor ray --address auto
set -euo pipefail
out=${1:-results/pointcloud_paper}
nesterovnode compare pointcloud --paper --out "$out" --resume "${@:2}"
# Fig. 3's claim over the seeds: per-model spread, paired ratios with intervals, verdicts
# ($out/statistics/statistics.md)
python "$(dirname "$0")/pointcloud_statistics.py" "$out" --quiet
