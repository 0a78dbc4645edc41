#!/usr/bin/env bash
# End-to-end load benchmark on loopback: the release server against the bot
# swarm, for several client counts, measured from the server's own
# accounting (GET /status.json) and the bots' JSON report.
#
#   benches/loadtest.sh                 # 200, 1000 and 2000 clients
#   benches/loadtest.sh 50 100          # other client counts
#
# Environment (defaults in brackets):
#   DURATION  seconds of play per run after the ramp [20]
#   RAMP      bots started per second [200]
#   NPCS      server NPCs [100]
#   PORT      first port; each run uses the next one [18490]
#   OUT       directory for logs, JSON and the table [target/loadtest]
#   NO_BUILD  set to skip `cargo build --release`
#   PIN       0 to let server and bots share every core [1: pin them]
#   SERVER    server binary to test [target/release/server] (e.g. a build
#             of a proposed change from another worktree)
#   BOTS      bots binary [target/release/bots]
#   PERF      set to profile the server with `perf record` during each
#             window ($OUT/perf-N.txt: the top symbols)
#
# Needs curl and jq (and taskset, from util-linux, to pin). Only 127.0.0.1
# is used. Every run is bounded in time, and everything the script started
# is killed when it exits, however it exits. The server is
# pinned to core 0 and the bots to core 1 when the machine has two cores and
# taskset exists; otherwise both share the machine, and the table says so.
#
# Figures (the markdown table is printed and written to $OUT/loadtest.md):
#   server CPU/client/snapshot = delta cpu_seconds / delta snapshots_sent over
#       the measured window (the whole process: tick, fan-out, sockets)
#   RSS/client = (RSS loaded - RSS idle) / players connected at the end
#   tick p50/p99/max = the room's own tick timing over its last 10 s window,
#       read at the end of the measured window
#   bots = the swarm's report; when `bot_cpu_saturated` is true, latency
#       figures describe the bot process, not the server.

set -euo pipefail

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "loadtest.sh needs $tool" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-20}
RAMP=${RAMP:-200}
NPCS=${NPCS:-100}
PORT=${PORT:-18490}
OUT=${OUT:-$ROOT/target/loadtest}
SETTLE=3
if [ "$#" -gt 0 ]; then CLIENTS=("$@"); else CLIENTS=(200 1000 2000); fi
WINDOW=$((DURATION - SETTLE - 3))
if [ "$WINDOW" -lt 5 ]; then
    echo "DURATION must be at least $((SETTLE + 8)) seconds" >&2
    exit 2
fi

mkdir -p "$OUT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -p server --bin server -p client-demo --bin bots
fi
SERVER=${SERVER:-$ROOT/target/release/server}
BOTS=${BOTS:-$ROOT/target/release/bots}

PIN_SERVER=()
PIN_BOTS=()
PINNING="not pinned (server and bots share every core)"
if [ "${PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_BOTS=(taskset -c 1)
    PINNING="server pinned to core 0, bots to core 1"
fi
# Two sockets per client on this machine, plus slack.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status() { curl -fsS --max-time 2 "http://127.0.0.1:$1/status.json"; }

TABLE=$OUT/loadtest.md
{
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $PINNING."
    echo "Runs: ${DURATION} s of play after a ramp of ${RAMP} bots/s, ${NPCS} NPCs, 30 Hz ticks and snapshots; measured window ${WINDOW} s, from ${SETTLE} s after the ramp. \"players\" is the server's count at the end of the window."
    echo "Load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| clients | connected | players | server CPU µs/client/snapshot | server CPU (cores) | snapshots/s | RSS idle | RSS loaded | RSS/client | tick p50 | tick p99 | tick max | p99 / budget | bytes out/client/s | bot snapshots/client/s | bot KiB/client/s | input→ack p50 / p99 ms | bot CPU % | bots saturated | healthy |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$TABLE"

for n in "${CLIENTS[@]}"; do
    port=$PORT
    PORT=$((PORT + 1))
    log=$OUT/server-$n.log
    json=$OUT/bots-$n.json
    rm -f "$json"
    echo "== $n clients on 127.0.0.1:$port" >&2
    "${PIN_SERVER[@]}" "$SERVER" --addr "127.0.0.1:$port" --tick-hz 30 \
        --npcs "$NPCS" --max-clients $((n + 16)) >"$log" 2>&1 &
    server_pid=$!
    PIDS+=("$server_pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$log" && break
        sleep 0.1
    done
    grep -q "listening on" "$log" || { echo "server did not start; see $log" >&2; exit 1; }
    sleep 2
    idle=$(status "$port")

    ramp_s=$(((n + RAMP - 1) / RAMP))
    timeout $((ramp_s + DURATION + 60)) "${PIN_BOTS[@]}" "$BOTS" \
        --url "ws://127.0.0.1:$port/ws" --clients "$n" --duration "$DURATION" \
        --ramp-per-sec "$RAMP" --json "$json" --no-progress \
        >"$OUT/bots-$n.log" 2>&1 &
    bots_pid=$!
    PIDS+=("$bots_pid")

    # The bots play for DURATION seconds after their ramp: measure inside
    # that, SETTLE seconds after the ramp ends, ending 3 s before they stop.
    sleep $((ramp_s + SETTLE))
    a=$(status "$port")
    if [ -n "${PERF:-}" ] && command -v perf >/dev/null; then
        # Where the server's time goes during the window (software clock:
        # no hardware counters in this VM).
        perf record -q -e cpu-clock -F 999 -p "$server_pid" -o "$OUT/perf-$n.data" \
            -- sleep "$WINDOW" >/dev/null 2>&1 || sleep "$WINDOW"
    else
        sleep "$WINDOW"
    fi
    b=$(status "$port")

    if [ -s "$OUT/perf-$n.data" ]; then
        {
            perf report -i "$OUT/perf-$n.data" --no-children --sort dso --stdio 2>/dev/null \
                | grep -E '^ +[0-9]' | head -6
            echo
            perf report -i "$OUT/perf-$n.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
                | grep -E '^ +[0-9]' | head -40
        } >"$OUT/perf-$n.txt" || true
    fi
    wait "$bots_pid" || echo "bots exited with status $? (see $OUT/bots-$n.log)" >&2
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true

    bots_report='{}'
    [ -s "$json" ] && bots_report=$(cat "$json")
    jq -rn --argjson n "$n" --argjson idle "$idle" --argjson a "$a" --argjson b "$b" \
        --argjson bots "$bots_report" '
        def r(p): (. * pow(10; p) | round) / pow(10; p);
        def mib: . / 1048576 | r(1) | tostring + " MiB";
        ($b.totals.snapshots_sent - $a.totals.snapshots_sent) as $snaps
        | ($b.process.cpu_seconds - $a.process.cpu_seconds) as $cpu
        | ($b.uptime_s - $a.uptime_s) as $dt
        | $b.rooms[0].tick_us as $t
        | [ $n,
            ($bots.clients_connected // "?"),
            $b.rooms[0].players,
            (if $snaps > 0 then ($cpu / $snaps * 1e6 | r(2)) else "n/a" end),
            ($cpu / $dt | r(2)),
            ($snaps / $dt | round),
            ($idle.process.rss_bytes | mib),
            ($b.process.rss_bytes | mib),
            ((($b.process.rss_bytes - $idle.process.rss_bytes) / ([$b.rooms[0].players, 1] | max) / 1024 | r(1) | tostring) + " KiB"),
            (($t.p50_us | r(0) | tostring) + " µs"),
            (($t.p99_us | r(0) | tostring) + " µs"),
            (($t.max_us | r(0) | tostring) + " µs"),
            (($t.p99_us / $t.budget_us * 100 | r(1) | tostring) + " %"),
            (($b.totals.bytes_out - $a.totals.bytes_out) / $dt / ([$b.rooms[0].players, 1] | max) | round),
            ($bots.snapshots_per_client_per_s // "?" | if type == "number" then r(1) else . end),
            ($bots.bytes_received_per_client_per_s // null | if . == null then "?" else (. / 1024 | r(1)) end),
            (($bots.input_ack_latency_ms.p50 // "?" | tostring) + " / " + ($bots.input_ack_latency_ms.p99 // "?" | tostring)),
            ($bots.bot_cpu_percent // "?" | if type == "number" then r(0) else . end),
            ($bots | if has("bot_cpu_saturated") then .bot_cpu_saturated else "?" end),
            ($bots | if has("healthy") then .healthy else "?" end)
          ] | map(tostring) | "| " + join(" | ") + " |"' >>"$TABLE"
    tail -n1 "$TABLE" >&2
done

echo "Load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$TABLE"
cat "$TABLE"
