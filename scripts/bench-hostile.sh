#!/usr/bin/env bash
# Acked raw TCP throughput without and then with hostile peers connected,
# in one run against one daemon (docs/bench.md, "Hostile peers").
#
#   bash scripts/bench-hostile.sh [SECONDS] [PER_KIND] [ROUNDS]
#
# Builds the release binary, starts a daemon on loopback with the raw TCP,
# HTTP, syslog TCP and admin listeners on their defaults, then runs
# `sluice bench tcp --acked` (4 connections, 500-event batches) alone, and
# again while `sluice bench hostile` holds PER_KIND connections of every kind
# from 16 loopback addresses, ROUNDS times interleaved (default 3). Prints
# every JSON line, the hostile reports, the daemon's CPU per acked event, its
# peak RSS and its cut counters.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
per_kind=${2:-32}
rounds=${3:-3}
source scripts/bench-daemon.sh
tcp=127.0.0.1:$(port); http=127.0.0.1:$(port); syslog=127.0.0.1:$(port); admin=127.0.0.1:$(port)
start_daemon "[sources.tcp]
address = \"$tcp\"
[sources.http]
address = \"$http\"
[sources.syslog_tcp]
address = \"$syslog\"
workspace = 1
[admin]
address = \"$admin\""
run() {
    local before after line
    before=$(cpu)
    line=$("$bin" bench tcp --addr "$tcp" --key "$key" --acked --connections 4 --batch-size 500 --duration "$secs")
    sleep 1
    after=$(cpu)
    echo "$1: $line"
    per_event "$line" "$before" "$after"
}
for round in $(seq "$rounds"); do
    run "round $round alone"
    "$bin" bench hostile --tcp "$tcp" --http "$http" --syslog "$syslog" --admin "$admin" --key "$key" \
        --per-kind "$per_kind" --spread 16 --duration $((secs + 4)) > "$work/hostile.json" &
    hostile=$!
    sleep 2
    run "round $round with hostile peers"
    wait "$hostile"
    echo "  hostile peers: $(cat "$work/hostile.json")"
done
echo "daemon peak RSS: $(grep VmHWM "/proc/$pid/status")"
curl -s "http://$admin/metrics" | grep -E '^sluice_connections_cut_total' | grep -v ' 0$' || true
kill -TERM "$pid"
wait "$pid"
