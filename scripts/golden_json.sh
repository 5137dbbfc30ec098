#!/usr/bin/env bash
# Writes the simulator's JSON for every built-in scenario (all policies, and CA 1.33 with
# its options) into DIR, to check that a refactoring changes no byte:
#   scripts/golden_json.sh /tmp/before; (refactor); scripts/golden_json.sh /tmp/after
#   diff -r /tmp/before /tmp/after
set -euo pipefail
dir=${1:?usage: scripts/golden_json.sh DIR}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}"
cargo build --release -q -p simulator
sim="$CARGO_TARGET_DIR/release/autoscaler-sim"
mkdir -p "$dir"
for sc in $("$sim" scenarios | awk '{print $1}'); do
  "$sim" run --scenario "$sc" --policy ours,ca-1.33,ca-1.30 --json "$dir/$sc.json" >/dev/null
  "$sim" run --scenario "$sc" --policy ca-1.33 --balance-similar-node-groups \
    --node-termination-handler --json "$dir/$sc-ca-options.json" >/dev/null
done
echo "wrote $(ls "$dir" | wc -l) reports to $dir"
