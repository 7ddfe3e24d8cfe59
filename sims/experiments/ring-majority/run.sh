#!/usr/bin/env bash
# Experiment (c): regenerates topologies/, results.csv, results.md and heatmap.png here.
# 2 topologies x 7 rules x 3 attacks x 2 seeds = 84 runs, two at a time; finished runs
# are kept in cells/ (not committed) and skipped when this is run again.
set -euo pipefail
cd "$(dirname "$0")"
python make_topologies.py
p2pfl sweep scenario.toml \
    --grid topology.file=topologies/majority.toml,topologies/no-majority.toml \
    --grid aggregator.name=gossip,median,trimmed_mean,krum,geometric_median,centered_clip,clipped_gossip \
    --grid byzantine.attack=alie,ipm,dissensus \
    --seeds 2 --jobs 2 --out . "$@"
