# Shared by the bench scripts: a release daemon on loopback in a temp dir.
#
#   source scripts/bench-daemon.sh
#   start_daemon 'listener sections (TOML, with $ports from port())'
#
# Sets $bin, $work (removed on exit), $key (a streaming key of workspace 1),
# $pid (the daemon); cpu prints the daemon's utime+stime in ticks ($ticks a
# second), and per_event BENCH_LINE BEFORE AFTER the daemon's CPU per event
# of a `sluice bench` JSON line. start_daemon prints the CPU model.
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
start_daemon() {
    printf 'data_dir = "%s"\n%s\n' "$work/data" "$1" > "$work/sluice.toml"
    key=$("$bin" apikeys create --data-dir "$work/data" --name bench | grep -Eo '[0-9a-f]{32}' | head -1)
    "$bin" serve --config "$work/sluice.toml" 2> "$work/daemon.log" &
    pid=$!
    for _ in $(seq 100); do grep -qs "sluice is ready" "$work/daemon.log" && break; sleep 0.1; done
    lscpu | grep -E "Model name|^CPU\(s\)"
}
per_event() {
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('  daemon CPU per acked event: %.2f us' % ((int(sys.argv[3])-int(sys.argv[2]))/int(sys.argv[4])*1e6/d['events']))" \
        "$1" "$2" "$3" "$ticks"
}
