#!/usr/bin/env bash
# Experiment (d): regenerates results.csv, results.md, heatmap.png and fraction.png here.
# 4 fractions x 6 rules x 2 attacks x 2 alphas x 2 seeds = 192 runs, two at a time; finished runs
# are kept in cells/ (not committed) and skipped when this is run again.
set -euo pipefail
cd "$(dirname "$0")"
p2pfl sweep scenario.toml \
    --grid byzantine.count=0,2,4,6 \
    --grid aggregator.name=median,trimmed_mean,geometric_median,krum,centered_clip,clipped_gossip \
    --grid byzantine.attack=alie,min_max \
    --grid data.partition_params.alpha=100.0,0.3 \
    --heatmap aggregator.name,byzantine.count \
    --seeds 2 --jobs 2 --out . "$@"
python plot_fraction.py
