#!/usr/bin/env bash
# OTLP/HTTP ingest against HTTP JSON lines, in one run on one daemon.
#
#   bash scripts/bench-otlp.sh [SECONDS] [ROUNDS]    # default 10 s, 3 rounds
#   SLUICE_BIN=/path/to/sluice bash scripts/bench-otlp.sh 10 3
#
# Uses $SLUICE_BIN, or builds the release binary. Starts one daemon with
# [sources.http] and [sources.otlp] on loopback (rate limits off), its data
# dir under /dev/shm, then per round runs, one after the other:
#
#   http       `bench http` with its defaults (32 connections × 100 JSON lines × ~200 B)
#   otlp-logs  `bench otlp --signal logs` (protobuf, 4 connections × 500 log records)
#   otlp-logs-3200  the same with 8 connections × 400 records: as many
#              records in flight as `bench http` has (3,200), since each
#              connection waits for its answer, which comes after the commit
#
# and once after the rounds: `bench otlp` with --signal metrics, --signal
# traces, and --signal logs --encoding json. For each run it prints the
# bench's JSON line, the acked rate, p99, and the daemon's CPU per record
# (utime+stime from /proc/PID/stat, from just before the run until its CPU
# stays put for a second, over the records the bench counted) and how busy
# the whole machine was meanwhile (other work there skews the figures);
# then the medians per workload.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
if [ -z "${SLUICE_BIN:-}" ]; then
    cargo build --release --quiet
    SLUICE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
fi
bin=$SLUICE_BIN
work=$(mktemp -d /dev/shm/sluice-bench-otlp.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)
lscpu | grep -E "Model name|^CPU\(s\)"
echo "binary: $bin ($(git rev-parse --short HEAD)$(git diff --quiet || echo +changes))"

http=127.0.0.1:$(free_port)
otlp=127.0.0.1:$(free_port)
cat > "$work/sluice.toml" << EOF
data_dir = "$work/data"
[sources.http]
address = "$http"
rate_limit = { per = "off" }
[sources.otlp]
address = "$otlp"
rate_limit = { per = "off" }
EOF
key=$("$bin" apikeys create --data-dir "$work/data" --name bench | grep -Eo '[0-9a-f]{32}' | head -1)
"$bin" serve --config "$work/sluice.toml" 2> "$work/daemon.log" &
pid=$!
for _ in $(seq 100); do grep -qs "sluice is ready" "$work/daemon.log" && break; sleep 0.1; done
grep -qs "sluice is ready" "$work/daemon.log" || { cat "$work/daemon.log"; exit 1; }
echo "daemon pid $pid, http $http, otlp $otlp, data $work/data"

daemon_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# Busy and idle ticks of the whole machine.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }

# run NAME BENCH-ARGS…: one bench run; appends "NAME <json line> <daemon ticks>" to $work/runs.
run() {
    local name=$1 before after last line machine0 machine1
    shift
    machine0=$(machine_ticks)
    before=$(daemon_ticks)
    line=$("$bin" bench "$@" --key "$key" --duration "$secs" 2> "$work/bench.err") || {
        cat "$work/bench.err" >&2
        exit 1
    }
    # The daemon may still be writing what it acknowledged: count until it is idle.
    after=$(daemon_ticks)
    for _ in $(seq 30); do
        sleep 1
        last=$after
        after=$(daemon_ticks)
        [ "$after" = "$last" ] && break
    done
    machine1=$(machine_ticks)
    echo "$name $line $((after - before))" >> "$work/runs"
    python3 - "$name" "$line" "$((after - before))" "$ticks" "$machine0" "$machine1" << 'PY'
import json, sys
name, d, used, ticks = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
(b0, i0), (b1, i1) = (map(int, a.split()) for a in sys.argv[5:7])
n = d.get("records", d.get("events"))
print(f"{name:<13} {sys.argv[2]}")
print(f"{'':<13} {n / d['seconds']:>10,.0f} acked/s, p99 {d['p99_ms']:6.1f} ms, "
      f"daemon CPU {used / ticks * 1e6 / n:.3f} us/record, machine busy {(b1 - b0) / max(b1 - b0 + i1 - i0, 1):.0%}")
PY
}

for round in $(seq "$rounds"); do
    echo "== round $round"
    run http http --addr "$http"
    run otlp-logs otlp --addr "$otlp" --signal logs
    run otlp-logs-3200 otlp --addr "$otlp" --signal logs --connections 8 --batch-size 400
done
echo "== once each"
run otlp-metrics otlp --addr "$otlp" --signal metrics
run otlp-traces otlp --addr "$otlp" --signal traces
run otlp-logs-json otlp --addr "$otlp" --signal logs --encoding json

kill -TERM "$pid"
wait "$pid" || true
echo "== medians ($rounds round(s) of http, otlp-logs and otlp-logs-3200, $secs s each)"
python3 - "$work/runs" "$ticks" << 'PY'
import json, statistics, sys
ticks = int(sys.argv[2])
runs = {}
for row in open(sys.argv[1]):
    name, rest = row.split(" ", 1)
    line, used = rest.rsplit(" ", 1)
    d = json.loads(line)
    n = d.get("records", d.get("events"))
    runs.setdefault(name, []).append((n / d["seconds"], d["p99_ms"], int(used) / ticks * 1e6 / n))
print(f"| workload | runs | acked records/s | p99 ms | daemon CPU µs/record |")
print(f"|---|---|---|---|---|")
for name, rs in runs.items():
    med = [statistics.median(r[i] for r in rs) for i in range(3)]
    print(f"| {name} | {len(rs)} | {med[0]:,.0f} | {med[1]:.1f} | {med[2]:.3f} |")
PY
