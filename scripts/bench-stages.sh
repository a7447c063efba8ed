#!/usr/bin/env bash
# Where an acknowledged batch's time goes, at full and at half load, and
# what scraping /metrics costs (docs/bench.md, "Where an ack's time goes").
#
#   bash scripts/bench-stages.sh [SECONDS] [SCRAPES]
#
# Builds the release binary and starts a daemon on loopback with the raw
# TCP and admin listeners. Runs `sluice bench tcp --acked` (4 connections,
# 500-event batches) unpaced, then paced at half the rate it reached; during
# each run `sluice top --batch` prints the screen of that run's middle
# (ack p50/p99 per listener, commit latency and size, p50/p99 of every ack
# stage). Then, with the daemon idle, SCRAPES scrapes of /metrics (default
# 2000) measure the daemon's CPU per scrape. Prints the CPU model and the
# daemon's CPU per acked event.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
scrapes=${2:-2000}
source scripts/bench-daemon.sh
tcp=127.0.0.1:$(port); admin=127.0.0.1:$(port)
start_daemon "$(printf '[sources.tcp]\naddress = "%s"\n[admin]\naddress = "%s"' "$tcp" "$admin")"
run() { # label, extra bench args...
    local label=$1 before after
    shift
    before=$(cpu)
    (sleep 3; "$bin" top --server "http://$admin" --batch --interval $((secs - 6)) --width 110 > "$work/top.txt") &
    last=$("$bin" bench tcp --addr "$tcp" --key "$key" --acked --connections 4 --batch-size 500 --duration "$secs" "$@")
    wait $!
    sleep 1
    after=$(cpu)
    echo "$label: $last"
    per_event "$last" "$before" "$after"
    cat "$work/top.txt"
}
run "full load"
half=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['acked_events_per_sec'] / 2))" "$last")
run "half load (--rate $half)" --rate "$half"
before=$(cpu)
for _ in $(seq "$scrapes"); do curl -s -o /dev/null "http://$admin/metrics"; done
after=$(cpu)
python3 -c "import sys; n=int(sys.argv[1]); c=(int(sys.argv[2])-int(sys.argv[3]))/int(sys.argv[4]); print('%d scrapes of /metrics: daemon CPU %.3f s, %.0f us per scrape, %.3f%% of one core at one scrape a second' % (n, c, c/n*1e6, c/n*100))" \
    "$scrapes" "$after" "$before" "$ticks"
echo "/metrics: $(curl -s "http://$admin/metrics" | wc -c) bytes, $(curl -s "http://$admin/metrics" | grep -vc '^#') samples"
kill -TERM "$pid"
wait "$pid"
