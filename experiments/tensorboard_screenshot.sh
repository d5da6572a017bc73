#!/usr/bin/env bash
# The TensorBoard screenshot in the docs (docs/assets/tensorboard.png): FedTAR and FedAvg, seed 0,
# of the FTA v2 sweep (experiments/fta2.toml, runs under runs/experiments/fta2), as TensorBoard's
# scalars page shows them, taken by headless Chromium (Debian's `chromium` package).
#   bash experiments/tensorboard_screenshot.sh [RUNS] [OUT.png]
set -euo pipefail
runs=${1:-runs/experiments/fta2/runs/all}
out=${2:-docs/assets/tensorboard.png}
logdir=$(mktemp -d)
profile=$(mktemp -d)
ln -s "$(realpath "$runs/fedtar-chained/seed-0/tensorboard")" "$logdir/fedtar-seed0"
ln -s "$(realpath "$runs/fedavg/seed-0/tensorboard")" "$logdir/fedavg-seed0"
port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
tensorboard --logdir "$logdir" --host 127.0.0.1 --port "$port" >"$logdir.log" 2>&1 &
board=$!
trap 'kill $board 2>/dev/null; rm -rf "$logdir" "$profile"' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null && break; sleep 1; done
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1500,1000 --virtual-time-budget=20000 \
  --screenshot="$(realpath -m "$out")" \
  "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=train%2Floss%24%7Calpha_visit%7Cround_seconds&_smoothingWeight=0" \
  2>/dev/null
echo "wrote $out"
