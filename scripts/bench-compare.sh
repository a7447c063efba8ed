#!/usr/bin/env bash
# This build against an older commit, in one run on one machine (issue 12:
# report ratios measured together, never figures from different days).
#
#   bash scripts/bench-compare.sh [BASE_COMMIT] [SECONDS] [ROUNDS]
#
# BASE_COMMIT (default 14b2bd8) is built from git in a worktree under
# target/bench-base (kept between runs). Per round, for the base and then
# this build, each workload runs against a fresh daemon on loopback (raw
# TCP, HTTP and syslog TCP listeners, fresh data dir):
#
#   tcp       `bench tcp --acked`, 4 connections × 500 events × ~200 B, unpaced
#   tcp_half  the same paced at half of what this binary's tcp run reached
#   http      `bench http`, 4 connections × 500 JSON lines (rate limit off)
#   syslog    `bench syslog --proto tcp`, 4 connections × 200 B
#
# For each run it prints the rate and ack latency the load generator saw,
# and from /proc, counted from the start of the load until the daemon is
# idle again: the daemon's CPU per event (utime+stime), bytes it wrote per
# event (write_bytes) and their ratio to the wire bytes the generator sent
# (tcp), its peak RSS, events.redb's size afterwards, how busy the whole
# machine was during the load, and for syslog how many messages were stored
# of those sent. Then the medians per binary and workload, and this build's
# ratio to the base.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-14b2bd8}
secs=${2:-10}
rounds=${3:-3}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet
new_bin=$target/release/sluice
tree=$target/bench-base/tree
if [ ! -d "$tree" ]; then git worktree add --detach "$tree" "$base" > /dev/null; fi
git -C "$tree" checkout --quiet --detach "$base"
(cd "$tree" && CARGO_TARGET_DIR=$target/bench-base/target cargo build --release --quiet)
base_bin=$target/bench-base/target/release/sluice
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$pid/io"; }
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }
ticks=$(getconf CLK_TCK)
lscpu | grep -E "Model name|^CPU\(s\)"
echo "base $base: $base_bin"
echo "this build $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes): $new_bin"

# Waits until the daemon's CPU stays put for a second (at most 60 s).
wait_idle() {
    local last now
    last=$(cpu)
    for _ in $(seq 60); do
        sleep 1
        now=$(cpu)
        [ "$now" = "$last" ] && return
        last=$now
    done
}

# run LABEL BIN WORKLOAD [RATE]: one fresh daemon, one load; appends a row.
run() {
    local label=$1 bin=$2 load=$3 rate=${4:-} dir=$work/run
    rm -rf "$dir"
    mkdir -p "$dir"
    local tcp http syslog attempt
    # A free port can be taken (by a client's ephemeral port) before the
    # daemon binds it: then it exits, and the run starts again on new ports.
    for attempt in 1 2 3; do
        tcp=127.0.0.1:$(port) http=127.0.0.1:$(port) syslog=127.0.0.1:$(port)
        printf 'data_dir = "%s"\n[sources.tcp]\naddress = "%s"\n[sources.http]\naddress = "%s"\n[sources.http.rate_limit]\nper = "off"\n[sources.syslog_tcp]\naddress = "%s"\nworkspace = 1\n' \
            "$dir/data" "$tcp" "$http" "$syslog" > "$dir/sluice.toml"
        key=$("$bin" apikeys create --data-dir "$dir/data" --name bench | grep -Eo '[0-9a-f]{32}' | head -1)
        "$bin" serve --config "$dir/sluice.toml" 2> "$dir/daemon.log" &
        pid=$!
        for _ in $(seq 100); do grep -qs "sluice is ready" "$dir/daemon.log" && break; sleep 0.1; done
        kill -0 "$pid" 2> /dev/null && break
        echo "$label $load: the daemon exited at start (attempt $attempt):" >&2
        tail -n 5 "$dir/daemon.log" >&2
        [ "$attempt" = 3 ] && exit 1
    done
    local cpu0 w0 b0 line
    cpu0=$(cpu); w0=$(written); b0=$(busy)
    case $load in
        tcp|tcp_half) line=$("$new_bin" bench tcp --addr "$tcp" --key "$key" --acked --connections 4 --batch-size 500 \
                                --duration "$secs" ${rate:+--rate "$rate"} 2>> "$work/bench.err") ;;
        http) line=$("$new_bin" bench http --addr "$http" --key "$key" --connections 4 --batch-size 500 \
                         --duration "$secs" 2>> "$work/bench.err") ;;
        syslog) line=$("$new_bin" bench syslog --proto tcp --addr "$syslog" --connections 4 --duration "$secs" 2>> "$work/bench.err") ;;
    esac
    local b1
    b1=$(busy)
    wait_idle
    local cpu1 w1 hwm stored=""
    cpu1=$(cpu); w1=$(written)
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid" || true
    if [ "$load" = syslog ]; then stored=$("$new_bin" export --data-dir "$dir/data" 2> /dev/null | wc -l); fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "$load" "$line" "$((cpu1 - cpu0))" \
        "$((w1 - w0))" "$hwm" "$(stat -c %s "$dir/data/events.redb")" "$b0" "$b1" "$stored" "$ticks" >> "$work/rows.tsv"
    python3 scripts/bench_compare_row.py < <(tail -1 "$work/rows.tsv")
}

for round in $(seq "$rounds"); do
    for which in base new; do
        bin=$base_bin; [ $which = new ] && bin=$new_bin
        run "$which" "$bin" tcp
        full=$(tail -1 "$work/rows.tsv" | cut -f4 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["acked_events_per_sec"] / 2))')
        run "$which" "$bin" tcp_half "$full"
        run "$which" "$bin" http
        run "$which" "$bin" syslog
    done
done
python3 scripts/bench_compare_row.py --summary < "$work/rows.tsv"
grep -h "retried\|not counted\|error" "$work/bench.err" | sort | uniq -c || true
