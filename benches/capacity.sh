#!/usr/bin/env bash
# How many players the server holds at 30 Hz on this machine: runs
# benches/loadtest.sh at growing client counts until one fails the bar
# below, then halves the gap between the last count that passed and the
# first that failed, and says which count it holds and what gave way above
# it. The server is pinned to one core (core 0) as in loadtest.sh, so the
# answer is players per server core.
#
#   benches/capacity.sh                    # rooms of 16, the default deployment
#   LAYOUT=single benches/capacity.sh      # one room of every client
#
# The bar, for each run, over loadtest.sh's measured window:
#   * the bots' report is healthy: no connection failure, disconnect, lost
#     connection, decode or protocol error, input dropped or never
#     acknowledged, stall over 2 s (README, "Load testing");
#   * the bots got at least MIN_RATE snapshots a second each, on average;
#   * the worst room's tick p99 is under TICK_P99_PCT % of the tick budget
#     (the server's own /status.json);
#   * the server used under SERVER_CPU_MAX of its core.
# A run whose bots were saturated (bot CPU over 90% of their core, or their
# timers a quarter tick late) measures the bots, not the server: the
# search stops there, and the count that passed last is a lower bound.
# A count that fails is run once more before the search takes the failure
# (RETRIES): on a shared machine a neighbour's burst only ever makes a run
# worse, and the bots' timer verdict in particular tripped at 1,500 in one
# search and passed 2,370 in the next (BENCHMARKS.md section 6). A count
# passes if any of its runs does; every run is in the table.
#
# Environment (defaults in brackets):
#   LAYOUT          rooms or single [rooms]
#   START           first client count [250]
#   MAX             largest client count tried [8000]
#   RESOLUTION      stop halving when the gap is under this % of the count
#                   that passed [10]
#   MIN_RATE        snapshots a second per bot, of 30 [29.5]
#   TICK_P99_PCT    tick p99 limit, % of the budget [25]
#   SERVER_CPU_MAX  server CPU limit, in cores [0.9]
#   DURATION        seconds of play per run after the ramp [12]
#   RETRIES         runs more of a count that failed, before the failure
#                   counts [1]
#   OUT             directory for every run and the table [target/capacity]
#   and loadtest.sh's NPCS, ROOM_CAPACITY, ROOM_NPCS, RAMP, PORT, SERVER,
#   BOTS, NO_BUILD, LIGHT, DATAGRAMS (1: the bots over the datagram channel).
#
# Needs what loadtest.sh needs (curl, jq, taskset). Only 127.0.0.1 is used;
# at most log2(MAX / START) + 1 runs to find the failing count and as many
# halvings as RESOLUTION allows (about ten runs, a minute each at most).
# Writes $OUT/capacity.md; exits 0 with a verdict, 2 if it could not run.

set -euo pipefail

command -v jq >/dev/null || { echo "capacity.sh needs jq" >&2; exit 2; }
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LAYOUT=${LAYOUT:-rooms}
START=${START:-250}
MAX=${MAX:-8000}
RESOLUTION=${RESOLUTION:-10}
MIN_RATE=${MIN_RATE:-29.5}
TICK_P99_PCT=${TICK_P99_PCT:-25}
SERVER_CPU_MAX=${SERVER_CPU_MAX:-0.9}
RETRIES=${RETRIES:-1}
OUT=${OUT:-$ROOT/target/capacity}
export DURATION=${DURATION:-12}
case $LAYOUT in
    single | rooms) ;;
    *) echo "LAYOUT must be rooms or single" >&2; exit 2 ;;
esac

mkdir -p "$OUT"
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -p server --bin server -p client-demo --bin bots
fi
export NO_BUILD=1

ROWS=$OUT/rows.md
: >"$ROWS"

# Runs loadtest.sh for $1 clients (run $2 of that count) and sets VERDICT:
# pass, saturated, or what failed ("tick p99 31 % of budget", ...).
VERDICT=
measure() {
    local n=$1 run=$2 dir=$OUT/$LAYOUT-$1
    [ "$run" -gt 1 ] && dir=$dir-run$run
    rm -rf "$dir"
    echo "== capacity: $n clients, layout $LAYOUT, run $run" >&2
    OUT=$dir LAYOUTS=$LAYOUT "$ROOT/benches/loadtest.sh" "$n" >"$dir.log" 2>&1 \
        || { echo "loadtest.sh failed for $n clients; see $dir.log" >&2; exit 2; }
    local tag=$LAYOUT-$n
    local bots=$dir/bots-$tag.json a=$dir/status-$tag-a.json b=$dir/status-$tag-b.json
    [ -s "$bots" ] && [ -s "$a" ] && [ -s "$b" ] \
        || { echo "no report for $n clients; see $dir" >&2; exit 2; }
    VERDICT=$(jq -rn --slurpfile bots "$bots" --slurpfile a "$a" --slurpfile b "$b" \
        --argjson min_rate "$MIN_RATE" --argjson tick_pct "$TICK_P99_PCT" \
        --argjson cpu_max "$SERVER_CPU_MAX" '
        def r(p): (. * pow(10; p) | round) / pow(10; p);
        $bots[0] as $r | $a[0] as $a | $b[0] as $b
        | (($b.process.cpu_seconds - $a.process.cpu_seconds) / ($b.uptime_s - $a.uptime_s)) as $cpu
        | ($b.tick_us.p99_us / $b.tick_us.budget_us * 100) as $tick
        | ($r.snapshots_per_client_per_s // 0) as $rate
        # What the server measures of itself holds whatever the bots did;
        # what the bots saw does not when they were saturated.
        | [ (if $tick >= $tick_pct then "tick p99 \($tick | r(1)) % of budget" else empty end),
            (if $cpu >= $cpu_max then "server CPU \($cpu | r(2)) cores" else empty end) ] as $server
        | [ (if $r.healthy != true then "bots unhealthy: " + ($r.problems | join("; ")) else empty end),
            (if $rate < $min_rate then "\($rate | r(2)) snapshots a second per bot" else empty end) ] as $seen
        | if ($server | length) > 0 then $server | join(", ")
          elif $r.bot_cpu_saturated == true then "saturated"
          elif ($seen | length) > 0 then $seen | join(", ")
          else "pass" end')
    jq -rn --argjson n "$n" --arg verdict "$VERDICT" \
        --slurpfile bots "$bots" --slurpfile a "$a" --slurpfile b "$b" '
        def r(p): (. * pow(10; p) | round) / pow(10; p);
        def num(p): if type == "number" then r(p) else "?" end;
        $bots[0] as $r | $a[0] as $a | $b[0] as $b
        | ($b.totals.snapshots_sent - $a.totals.snapshots_sent) as $snaps
        | ($b.process.cpu_seconds - $a.process.cpu_seconds) as $cpu
        | ($b.uptime_s - $a.uptime_s) as $dt
        | [ $n, ($b.rooms | length),
            ($cpu / $dt | r(2)),
            (if $snaps > 0 then ($cpu / $snaps * 1e6 | r(1)) else "n/a" end),
            ($b.tick_us.p99_us / $b.tick_us.budget_us * 100 | r(1)),
            ($r.snapshots_per_client_per_s | num(2)),
            (($r.input_ack_latency_ms.p50 | num(1) | tostring) + " / "
                + ($r.input_ack_latency_ms.p99 | num(1) | tostring)),
            ($r.bytes_received_per_client_per_s // null | if . == null then "?" else (. / 1024 | r(1)) end),
            ($r.bot_cpu_percent_full_load | num(0)),
            $verdict
          ] | map(tostring) | "| " + join(" | ") + " |"' >>"$ROWS"
    tail -n1 "$ROWS" >&2
}

# Measures $1 clients until a run passes or RETRIES more runs failed;
# VERDICT is the last run's, and notes the server's limit if it was that.
judge() {
    local run=1
    measure "$1" "$run"
    while [ "$VERDICT" != pass ] && [ "$run" -le "$RETRIES" ]; do
        run=$((run + 1))
        measure "$1" "$run"
    done
    note "$1"
}

# Grow until a run fails or the bots saturate (or MAX), then halve the gap
# between the last pass and the first count that did not pass. `failed`
# is that count, `why` its verdict.
passed=0
failed=
why=
# The smallest count at which the server itself (tick, CPU) failed, and how.
server_limit=
server_why=
note() {
    case $VERDICT in
        "tick p99"* | "server CPU"*)
            if [ -z "$server_limit" ] || [ "$1" -lt "$server_limit" ]; then
                server_limit=$1
                server_why=$VERDICT
            fi
            ;;
    esac
}
n=$START
while [ "$n" -le "$MAX" ]; do
    judge "$n"
    [ "$VERDICT" != pass ] && { failed=$n; why=$VERDICT; break; }
    passed=$n
    n=$((n * 2))
done
if [ -n "$failed" ]; then
    while [ $(((failed - passed) * 100)) -gt $((passed * RESOLUTION)) ]; do
        mid=$(((passed + failed) / 20 * 10))
        [ "$mid" -le "$passed" ] && break
        judge "$mid"
        if [ "$VERDICT" = pass ]; then
            passed=$mid
        else
            failed=$mid
            why=$VERDICT
        fi
    done
fi

if [ "$LAYOUT" = single ]; then
    shape="one room of every client with ${NPCS:-100} NPCs"
else
    shape="rooms of ${ROOM_CAPACITY:-16} players with ${ROOM_NPCS:-8} NPCs each"
fi
if [ "$passed" -eq 0 ]; then
    verdict="Not even $failed players met the bar (the search went down from $START): at $failed, $why."
elif [ "$why" = saturated ]; then
    verdict="Holds **at least $passed players** at 30 Hz on one server core ($shape); at $failed the bots saturated, which measures the bots, not the server: run the bots on another machine to find the limit."
    if [ -n "$server_limit" ]; then
        verdict="$verdict The server's own limit, whatever the bots did, was reached at $server_limit ($server_why): it lies between."
    fi
elif [ -z "$failed" ]; then
    verdict="Holds **at least $passed players** at 30 Hz on one server core ($shape): every count up to MAX=$MAX passed."
else
    verdict="Holds **$passed players** at 30 Hz on one server core ($shape); at $failed: $why."
fi
{
    echo "Capacity search on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(date -u +%Y-%m-%d): benches/loadtest.sh per count, server on core 0, light bots$([ "${DATAGRAMS:-0}" = 1 ] && echo ' over the datagram channel') on core 1; bar: healthy bots, at least $MIN_RATE snapshots a second each, worst tick p99 under $TICK_P99_PCT % of the budget, server under $SERVER_CPU_MAX of its core."
    echo
    echo "$verdict"
    echo
    echo "| clients | rooms | server CPU (cores) | µs/client/snapshot | tick p99, % of budget | snapshots/client/s | input→ack p50 / p99 ms | KiB/client/s | bot CPU % | verdict |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    sort -t'|' -k2,2n "$ROWS"
} >"$OUT/capacity.md"
cat "$OUT/capacity.md"
