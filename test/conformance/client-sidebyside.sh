#!/usr/bin/env bash
# Side-by-side load run: the project's broker (cmd/broker, embedded NATS) and
# Faye's Node server, driven by the same cmd/bayeux-bench settings, on loopback.
#
#   test/conformance/client-sidebyside.sh [transport] [duration] [subscribers] [channels] [publishers] [inflight]
#
# Prints one line per server (throughput, losses, latency, server CPU per
# delivery, load-generator CPU) and the throughput ratio broker/Faye.
set -euo pipefail
TR=${1:-websocket}; DUR=${2:-10s}; SUBS=${3:-200}; CH=${4:-1}; PUBS=${5:-4}; INF=${6:-8}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/broker" ./cmd/broker && go build -o "$work/bench" ./cmd/bayeux-bench)

cputime() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
wait_for() { for _ in $(seq 200); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.05; done; echo "timeout waiting for $1 in $2" >&2; return 1; }

bench() { # name url server-pid
  local c0 c1 t0 t1
  c0=$(cputime "$3")
  "$work/bench" -url "$2" -transport "$TR" -subscribers "$SUBS" -channels "$CH" -publishers "$PUBS" \
    -inflight "$INF" -duration "$DUR" -progress 0 > "$work/$1.json"
  c1=$(cputime "$3")
  python3 - "$1" "$work/$1.json" "$c0" "$c1" "$TR" <<'PY'
import json, sys
name, path, c0, c1, tr = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
d = json.load(open(path)); l = d["latency_ms"]; cpu = c1 - c0
print(f"{name} {tr}: delivered {d['delivered']} ({d['delivered_per_sec']:.0f}/s) published {d['published']} "
      f"losses {d['losses']} dups {d['duplicates']} errors {d['publish_errors']} "
      f"p50 {l['p50']:.1f}ms p99 {l['p99']:.1f}ms max {l['max']:.1f}ms; "
      f"server cpu {cpu:.1f}s ({cpu*1e6/max(1,d['delivered']):.1f} us/delivery), bench cpu {d['bench_cpu_seconds']:.1f}s")
PY
}

"$work/broker" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json 2> "$work/broker.log" &
pids+=($!)
wait_for '"serving bayeux"' "$work/broker.log"
addr=$(grep '"serving bayeux"' "$work/broker.log" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["addr"])')
bench broker "http://$addr/cometd" "${pids[0]}"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

(cd "$here" && FAYE_KEEP_STDIN=1 exec node client-faye-server.cjs 0 5 600 < /dev/null > "$work/faye.port") &
pids+=($!)
wait_for port "$work/faye.port"
port=$(python3 -c "import json; print(json.load(open('$work/faye.port'))['port'])")
bench faye "http://127.0.0.1:$port/faye" "${pids[1]}"

python3 -c "import json; a=json.load(open('$work/broker.json')); b=json.load(open('$work/faye.json')); print('ratio (broker/faye delivered msgs/s): %.2f' % (a['delivered_per_sec']/b['delivered_per_sec']))"
