#!/usr/bin/env bash
# Experiment (a): regenerates results.csv, results.md and heatmap.png in this folder.
# 7 rules x 6 attacks x 2 data splits x 3 seeds = 252 runs, two at a time.
# Finished runs are kept in cells/ (not committed): running this again skips them.
set -euo pipefail
cd "$(dirname "$0")"
p2pfl sweep scenario.toml \
    --grid aggregator.name=gossip,median,trimmed_mean,krum,geometric_median,centered_clip,clipped_gossip \
    --grid byzantine.attack=sign_flip,alie,ipm,min_max,fang_median,dissensus \
    --grid data.partition_params.alpha=100.0,0.3 \
    --seeds 3 --jobs 2 --out . "$@"
