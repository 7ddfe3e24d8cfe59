#!/usr/bin/env bash
# Experiment (c): regenerates topologies/, paper/ and lattice/ (results.csv, results.md,
# heatmap.png, sweep.json in each). Finished runs are kept in paper/cells/ and
# lattice/cells/ (not committed) and skipped when this is run again.
#
# paper/: the paper's malicious rings x 6 rules x 3 attacks x 2 seeds = 72 runs of 900
# rounds. --zip pairs each rule with its parameters (group "rule") and each attack with
# its parameters (the default group); the two groups and the topologies are crossed.
# lattice/: the earlier ring lattice, library defaults: 2 x 7 x 3 x 2 = 84 runs.
set -euo pipefail
cd "$(dirname "$0")"
python make_topologies.py
p2pfl sweep paper.toml \
    --grid topology.file=topologies/paper-ring-majority.toml,topologies/paper-ring-no-majority.toml \
    --zip 'rule:aggregator.name=gossip,trimmed_mean,geometric_median,clipped_gossip,clipped_gossip,clipped_gossip' \
    --zip 'rule:aggregator.params={},{},{},{tau=0.1},{radius="adaptive"},{radius="theorem"}' \
    --zip 'byzantine.attack=alie,ipm,dissensus' \
    --zip 'byzantine.params={z=10.0},{eps=0.1},{eps=1.5}' \
    --seeds 2 --jobs 2 --out paper "$@"
p2pfl sweep lattice.toml \
    --grid topology.file=topologies/majority.toml,topologies/no-majority.toml \
    --grid aggregator.name=gossip,median,trimmed_mean,krum,geometric_median,centered_clip,clipped_gossip \
    --grid byzantine.attack=alie,ipm,dissensus \
    --seeds 2 --jobs 2 --out lattice "$@"
