#!/usr/bin/env bash
# rsyslog forwarding over RELP (omrelp) into sluice's `[sources.relp]`
# against rsyslog's own imrelp writing a file, in one run (issue 14).
#
#   bash scripts/bench-relp.sh [MESSAGES] [ROUNDS] [WINDOWS]   # default 300000, 2, "128 1024"
#
# Per round and per omrelp windowSize W, each receiver gets the same input:
# loggen (syslog-ng's, extracted as ../shared/tools/setup.sh does) writes
# MESSAGES RFC 5424 messages of 200 bytes into a sending rsyslog (imtcp),
# whose omrelp action (windowSize W, a LinkedList queue that retries
# forever) forwards them to the receiver:
#
#   sluice   `[sources.relp]`: answers each message after the fsync'd commit
#   imrelp   rsyslog's imrelp + omfile (answers on enqueue; the file is not fsynced)
#
# Printed per run: the time from the first message to the last one stored
# at the receiver, messages stored per second, and the receiver's CPU per
# message (utime+stime from /proc). Zero loss: the run fails if the
# receiver did not store every message within 120 s.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-300000}
rounds=${2:-2}
windows=${3:-128 1024}
tools=$(cd ../shared/tools 2> /dev/null && pwd) || { echo "needs ../shared/tools (loggen setup)" >&2; exit 2; }
# shellcheck source=/dev/null
source "$tools/setup.sh"
ensure_apt_pkgs rsyslog rsyslog-relp
ensure_loggen
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
ticks=$(getconf CLK_TCK)
lscpu | grep -E "Model name|^CPU\(s\)"
echo "rsyslog $(rsyslogd -v | head -1 | awk '{print $2}'), $total messages of 200 B per run"

# rsyslogd -n with config $2 in dir $1 in the background; prints its PID.
rsyslog() {
    mkdir -p "$1/work"
    rsyslogd -n -f "$2" -i "$1/pid" > "$1/log" 2>&1 &
    echo $!
}

# The sending rsyslog: imtcp on port $2, omrelp to port $3 with windowSize $4.
sender() {
    local dir=$1
    mkdir -p "$dir"
    cat > "$dir/rsyslog.conf" << CONF
global(workDirectory="$dir/work" maxMessageSize="8k")
module(load="imtcp")
module(load="omrelp")
ruleset(name="fwd") {
  action(type="omrelp" target="127.0.0.1" port="$3" windowSize="$4" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.size="2000000" queue.dequeueBatchSize="1024"
         queue.timeoutShutdown="10000" action.resumeRetryCount="-1" action.resumeInterval="1")
}
input(type="imtcp" address="127.0.0.1" port="$2" ruleset="fwd")
CONF
    rsyslog "$dir" "$dir/rsyslog.conf"
}

# Waits until `$1` (a command printing a count) reaches $total; at most 120 s.
wait_for() {
    local n
    for _ in $(seq 1200); do
        n=$($1)
        [ "$n" -ge "$total" ] && return 0
        sleep 0.1
    done
    echo "only $n of $total stored" >&2
    return 1
}

run() { # ROUND RECEIVER WINDOW
    local dir=$work/run rport aport
    rm -rf "$dir"
    mkdir -p "$dir"
    rport=$(port)
    aport=$(port)
    local rpid
    if [ "$2" = sluice ]; then
        local admin
        admin=$(port)
        printf 'data_dir = "%s"\n[sources.relp]\naddress = "127.0.0.1:%s"\nworkspace = 1\n[admin]\naddress = "127.0.0.1:%s"\n' \
            "$dir/data" "$rport" "$admin" > "$dir/sluice.toml"
        "$bin" serve --config "$dir/sluice.toml" 2> "$dir/daemon.log" &
        rpid=$!
        for _ in $(seq 100); do grep -qs "sluice is ready" "$dir/daemon.log" && break; sleep 0.1; done
        count() { curl -s "127.0.0.1:$admin/metrics" | awk '/^sluice_events_stored_total / {print $2}'; }
    else
        mkdir -p "$dir/recv"
        cat > "$dir/recv/rsyslog.conf" << CONF
global(workDirectory="$dir/recv/work" maxMessageSize="8k")
module(load="imrelp")
ruleset(name="out") { action(type="omfile" file="$dir/recv/out.log") }
input(type="imrelp" address="127.0.0.1" port="$rport" ruleset="out")
CONF
        rpid=$(rsyslog "$dir/recv" "$dir/recv/rsyslog.conf")
        sleep 0.5
        count() { [ -f "$dir/recv/out.log" ] && wc -l < "$dir/recv/out.log" || echo 0; }
    fi
    pids=("$rpid")
    local spid
    spid=$(sender "$dir/send" "$aport" "$rport" "$3")
    pids+=("$spid")
    sleep 0.5
    local c0 t0 t1 c1
    kill -0 "$rpid" 2> /dev/null || { echo "$2 did not start: $(tail -n 3 "$dir"/*.log "$dir"/recv/log 2> /dev/null)" >&2; return 1; }
    c0=$(cpu "$rpid")
    t0=$(now)
    "$LOGGEN" --inet --stream --syslog-proto --size 200 --rate 100000000 --number "$total" \
        --active-connections 1 127.0.0.1 "$aport" > "$dir/loggen.log" 2>&1
    wait_for count
    t1=$(now)
    c1=$(cpu "$rpid")
    kill "$spid" "$rpid"
    wait "$spid" "$rpid" 2> /dev/null || true
    python3 -c "import sys; r,k,w,n,t0,t1,c,hz=sys.argv[1:]; n,s,c,hz=int(n),float(t1)-float(t0),int(c),int(hz)
print('round %s %-6s windowSize %5s: %d stored in %6.2f s = %8.0f msg/s, receiver CPU %6.2f us/msg' % (r, k, w, n, s, n / s, c / hz * 1e6 / n))" \
        "$1" "$2" "$3" "$total" "$t0" "$t1" $((c1 - c0)) "$ticks"
}

for round in $(seq "$rounds"); do
    for w in $windows; do
        run "$round" sluice "$w"
        run "$round" imrelp "$w"
    done
done
