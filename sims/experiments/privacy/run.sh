#!/usr/bin/env bash
# Experiment (privacy): regenerates results.csv, results.md, heatmap.png and privacy.png here.
# 5 privacy levels (no DP; DP-SGD noise 0.7, 1, 2, 4) x 3 attacks (none, sign flip, ALIE)
# x 4 rules x 2 seeds = 120 runs, two at a time; finished runs are kept in cells/ (not
# committed) and skipped when this is run again.
set -euo pipefail
cd "$(dirname "$0")"
p2pfl sweep scenario.toml \
    --zip dp:privacy.mechanism=none,dp_sgd,dp_sgd,dp_sgd,dp_sgd \
    --zip dp:privacy.noise_multiplier=1.0,0.7,1.0,2.0,4.0 \
    --zip attack:byzantine.count=0,3,3 \
    --zip attack:byzantine.attack=sign_flip,sign_flip,alie \
    --grid aggregator.name=mean,median,trimmed_mean,clipped_gossip \
    --heatmap aggregator.name,privacy.noise_multiplier \
    --seeds 2 --jobs 2 --out . "$@"
python plot_privacy.py
