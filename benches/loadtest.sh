#!/usr/bin/env bash
# End-to-end load benchmark on loopback: the release server against the bot
# swarm, for several client counts and two room layouts, measured from the
# server's own accounting (GET /status.json) and the bots' JSON report.
#
#   benches/loadtest.sh                 # 200, 1000 and 2000 clients, both layouts
#   benches/loadtest.sh 50 100          # other client counts
#   LAYOUTS=single benches/loadtest.sh 1000
#
# Layouts (LAYOUTS, space-separated, run in this order for each count):
#   single  one room holding every client: server `--room bench:$NPCS
#           --room-capacity N`, bots `--room bench`. Every client sees every
#           other, as before the server had rooms: the figures compare with
#           the old ones and are the worst case per client.
#   rooms   the default deployment: matchmaking fills public rooms of
#           $ROOM_CAPACITY players with $ROOM_NPCS NPCs each, one OS thread
#           per room.
#
# Environment (defaults in brackets):
#   LAYOUTS        layouts to run ["single rooms"]
#   DURATION       seconds of play per run after the ramp [20]
#   RAMP           bots started per second [200]
#   NPCS           NPCs of the single room [100]
#   ROOM_CAPACITY  players per room in the rooms layout [16, the server's]
#   ROOM_NPCS      NPCs per room in the rooms layout [8, the server's]
#   LIGHT          auto: pass --light to the bots when they have it (light
#                  bots decode only snapshot headers and ack, so one core
#                  drives thousands); 1: require it; 0: full bots [auto]
#   DATAGRAMS      1: the bots (light ones only) carry inputs, acks and
#                  snapshots as UDP datagrams, the server's datagram
#                  channel (PROTOCOL.md section 3.7), as native game clients
#                  would; the bots table gives the share of snapshots that
#                  came by datagram (larger ones stay on the WebSocket) [0]
#   PORT           first port; each run uses the next one [18490]
#   OUT            directory for logs, JSON and the table [target/loadtest]
#   NO_BUILD       set to skip `cargo build --release`
#   PIN            0 to let server and bots share every core [1: pin them]
#   SERVER         server binary to test [target/release/server] (e.g. a
#                  build of a proposed change from another worktree)
#   BOTS           bots binary [target/release/bots]
#   PERF           1: profile the server with `perf record` during each
#                  window ($OUT/perf-LAYOUT-N.txt: the top binaries and
#                  symbols, and the server's system calls per snapshot sent,
#                  counted by `perf stat`); callgraph: the same with call
#                  graphs (-g), and the time split by kind of work and by
#                  system call (benches/perf-split.py, needs python3)
#
# Needs curl and jq (and taskset, from util-linux, to pin; perf, from
# Debian's linux-perf, for PERF). Only 127.0.0.1 is used. Every run is
# bounded in time, and everything the script started is killed when it
# exits, however it exits. The server is pinned to core 0 and the bots to
# core 1 when the machine has two cores and taskset exists; otherwise both
# share the machine, and the table says so.
#
# Figures (markdown tables printed and written to $OUT/loadtest.md):
#   players = the sum over rooms of each room's players at the end of the
#       window; rooms = rooms open (the bots' own count of rooms they were
#       placed in is in the bots table)
#   server CPU/client/snapshot = delta cpu_seconds / delta snapshots_sent over
#       the measured window (the whole process: ticks, fan-out, sockets)
#   RSS/client = (RSS loaded - RSS idle) / players at the end
#   tick p50/p99/max = the worst room's (highest p99) own tick timing over
#       its last 10 s, read at the end of the window (`tick_us`); tick
#       phases = mean over the window and over every room of the tick's
#       phases (GET /metrics, arena_tick_duration_seconds): inputs in, world
#       step, snapshot built and published (which wakes the room's fan-out
#       shard tasks, one per 32 clients);
#       late p99 = the highest 99th percentile over rooms of how late a tick
#       started
#   baseline 1 / ≤ 3 ticks old = the share of the window's snapshots
#       encoded against a baseline that old (GET /metrics,
#       arena_snapshot_baseline_age_ticks; full snapshots count as 0): how
#       often the diff runs at the ages BENCHMARKS.md section 2 prices
#   steal = the share of the window's CPU time that the hypervisor gave to
#       other guests (/proc/stat), on the server's core and the bots' core
#       when pinned: on a shared VM a run with much steal measured less
#       machine than it had (CPU per snapshot is CPU time, so it holds up
#       better than the latencies and the snapshot rate)
#   join = from each bot's TCP connect to its first snapshot (upgrade,
#       hello, welcome, then up to a tick), one sample per bot: what a
#       player waits during the ramp (RAMP bots a second)
#   bots = the swarm's report, full or light bots as the table says; when
#       `bot_cpu_saturated` is true (bot CPU over 90% of its cores at full
#       load, or its timers late by more than a quarter tick at p99) the
#       bots could not keep time: their latency figures include their own
#       delays, and if they also fell behind (snapshots/client/s under 30,
#       full snapshots) the row is not a valid measurement of the server.
#       Rates, latencies and "bot CPU %" are over the bots' full load only
#       (last bot started to stop: the report's window; the CPU is
#       `bot_cpu_percent_full_load`, or the whole run's average from bots
#       that predate it, then marked "(run)"); healthy
#       says "(N connections lost)" when the server dropped connections
#       that the bots then resumed, which the report counts as a problem
#       (the run is unhealthy: a player would have seen it).

set -euo pipefail

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "loadtest.sh needs $tool" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# The servers this script starts are its own: an operator token exported for
# another server would close their /status.json and /metrics to it.
unset ARENA_OPERATOR_TOKEN
LAYOUTS=${LAYOUTS:-single rooms}
DURATION=${DURATION:-20}
RAMP=${RAMP:-200}
NPCS=${NPCS:-100}
ROOM_CAPACITY=${ROOM_CAPACITY:-16}
ROOM_NPCS=${ROOM_NPCS:-8}
LIGHT=${LIGHT:-auto}
PORT=${PORT:-18490}
OUT=${OUT:-$ROOT/target/loadtest}
SETTLE=3
if [ "$#" -gt 0 ]; then CLIENTS=("$@"); else CLIENTS=(200 1000 2000); fi
WINDOW=$((DURATION - SETTLE - 3))
if [ "$WINDOW" -lt 5 ]; then
    echo "DURATION must be at least $((SETTLE + 8)) seconds" >&2
    exit 2
fi
for layout in $LAYOUTS; do
    case $layout in
        single | rooms) ;;
        *) echo "unknown layout $layout (single or rooms)" >&2; exit 2 ;;
    esac
done

mkdir -p "$OUT"
# The server and bots of the run in progress: reaped ones are taken off, so
# that an exit never signals a process id the system has since reused.
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

BOT_FLAGS=()
BOT_KIND=full
case $LIGHT in
    0) ;;
    auto | 1)
        if "$BOTS" --help 2>/dev/null | grep -q -- '--light'; then
            BOT_FLAGS=(--light)
            BOT_KIND=light
        elif [ "$LIGHT" = 1 ]; then
            echo "LIGHT=1 but $BOTS has no --light" >&2
            exit 2
        fi
        ;;
    *) echo "LIGHT must be auto, 1 or 0" >&2; exit 2 ;;
esac
if [ "${DATAGRAMS:-0}" = 1 ]; then
    if [ "$BOT_KIND" != light ] || ! "$BOTS" --help 2>/dev/null | grep -q -- '--datagrams'; then
        echo "DATAGRAMS=1 needs light bots with --datagrams" >&2
        exit 2
    fi
    BOT_FLAGS+=(--datagrams)
    BOT_KIND="light, datagrams"
fi

PIN_SERVER=()
PIN_BOTS=()
PINNING="not pinned (server and bots share every core)"
if [ "${PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_BOTS=(taskset -c 1)
    PINNING="server pinned to core 0, bots to core 1"
fi
if [ ${#PIN_SERVER[@]} -gt 0 ]; then
    STEAL_CORES="cpu0 cpu1"
    STEAL_HEAD="steal % server core / bots core"
else
    STEAL_CORES="cpu"
    STEAL_HEAD="steal % (all cores)"
fi
# Two sockets per client on this machine, plus slack.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Saves the server's /status.json as $OUT/status-$tag-$2.json (with 100+
# rooms it is too large for a command-line argument).
status() {
    curl -fsS --max-time 5 -o "$OUT/status-$tag-$2.json" "http://127.0.0.1:$1/status.json"
    curl -fsS --max-time 5 -o "$OUT/metrics-$tag-$2.txt" "http://127.0.0.1:$1/metrics" || true
    cat /proc/stat >"$OUT/procstat-$tag-$2.txt" 2>/dev/null || true
}
# Share of the window's CPU time the hypervisor gave to other guests
# (/proc/stat's steal column), in %: "server core / bots core" when they are
# pinned, else over all cores. A run with much steal measured a machine
# that was not all there.
steal() {
    awk -v cores="$STEAL_CORES" '
        FNR == 1 { f++ }
        $1 ~ /^cpu[0-9]*$/ {
            t = 0
            for (i = 2; i <= 9; i++) t += $i
            total[f, $1] = t; st[f, $1] = $9
        }
        END {
            n = split(cores, cs, " ")
            for (i = 1; i <= n; i++) {
                dt = total[2, cs[i]] - total[1, cs[i]]
                out = out (i > 1 ? " / " : "") (dt > 0 ? sprintf("%.0f", (st[2, cs[i]] - st[1, cs[i]]) / dt * 100) : "?")
            }
            print out
        }' "$OUT/procstat-$tag-a.txt" "$OUT/procstat-$tag-b.txt" 2>/dev/null || echo "?"
}
# Mean duration of each tick phase over the window, in µs, from the
# Prometheus histograms' _sum and _count (every room together):
# "ingest / simulate / snapshot". The snapshot phase is timed on the ticks
# that publish one: with fewer snapshots than ticks the three do not add up
# to a tick (this script runs snapshots at the tick rate).
phases() {
    awk '
        /^arena_tick_duration_seconds_(sum|count)\{phase="(Ingest|Simulate|Snapshot)"\}/ {
            split($1, k, "\""); kind = ($1 ~ /_sum/) ? "sum" : "count"
            v[FILENAME == ARGV[1] ? "a" : "b", kind, k[2]] = $2
        }
        END {
            n = split("Ingest Simulate Snapshot", ps, " ")
            for (i = 1; i <= n; i++) {
                c = v["b", "count", ps[i]] - v["a", "count", ps[i]]
                out = out (i > 1 ? " / " : "") (c > 0 ? sprintf("%.0f", (v["b", "sum", ps[i]] - v["a", "sum", ps[i]]) / c * 1e6) : "?")
            }
            print out
        }' "$OUT/metrics-$tag-a.txt" "$OUT/metrics-$tag-b.txt" 2>/dev/null || echo "?"
}

# Share of the window's snapshots whose baseline was 1 tick old, and 1 to 3
# ticks old, in % (full snapshots, age 0, are in neither), from the
# Prometheus histogram arena_snapshot_baseline_age_ticks: "1 / ≤ 3".
ages() {
    awk '
        /^arena_snapshot_baseline_age_ticks_(bucket\{le="(0\.0|1\.0|3\.0)"\}|count)/ {
            key = $1; sub(/^arena_snapshot_baseline_age_ticks_/, "", key)
            v[FILENAME == ARGV[1] ? "a" : "b", key] = $2
        }
        END {
            d = v["b", "count"] - v["a", "count"]
            if (d <= 0) { print "?"; exit }
            z = v["b", "bucket{le=\"0.0\"}"] - v["a", "bucket{le=\"0.0\"}"]
            one = v["b", "bucket{le=\"1.0\"}"] - v["a", "bucket{le=\"1.0\"}"] - z
            three = v["b", "bucket{le=\"3.0\"}"] - v["a", "bucket{le=\"3.0\"}"] - z
            printf "%.1f / %.1f\n", one / d * 100, three / d * 100
        }' "$OUT/metrics-$tag-a.txt" "$OUT/metrics-$tag-b.txt" 2>/dev/null || echo "?"
}

TABLE=$OUT/loadtest.md
SERVER_ROWS=$OUT/server-rows.md
BOT_ROWS=$OUT/bot-rows.md
: >"$SERVER_ROWS"
: >"$BOT_ROWS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for n in "${CLIENTS[@]}"; do
    for layout in $LAYOUTS; do
        port=$PORT
        PORT=$((PORT + 1))
        tag=$layout-$n
        log=$OUT/server-$tag.log
        json=$OUT/bots-$tag.json
        rm -f "$json" "$OUT/perf-$tag.data" "$OUT/perf-$tag.txt" "$OUT"/status-"$tag"-*.json \
            "$OUT"/metrics-"$tag"-*.txt
        if [ "$layout" = single ]; then
            server_flags=(--room "bench:$NPCS" --room-capacity "$n")
            room_flags=(--room bench)
        else
            server_flags=(--npcs "$ROOM_NPCS" --room-capacity "$ROOM_CAPACITY"
                --max-rooms $(((n + ROOM_CAPACITY - 1) / ROOM_CAPACITY + 16)))
            room_flags=()
        fi
        echo "== $n $BOT_KIND bots, layout $layout, on 127.0.0.1:$port" >&2
        "${PIN_SERVER[@]}" "$SERVER" --addr "127.0.0.1:$port" --tick-hz 30 \
            --max-clients $((n + 16)) "${server_flags[@]}" >"$log" 2>&1 &
        server_pid=$!
        PIDS+=("$server_pid")
        for _ in $(seq 100); do
            grep -q "listening on" "$log" && break
            sleep 0.1
        done
        grep -q "listening on" "$log" || { echo "server did not start; see $log" >&2; exit 1; }
        sleep 2
        status "$port" idle

        ramp_s=$(((n + RAMP - 1) / RAMP))
        timeout $((ramp_s + DURATION + 60)) "${PIN_BOTS[@]}" "$BOTS" \
            --url "ws://127.0.0.1:$port/ws" --clients "$n" --duration "$DURATION" \
            --ramp-per-sec "$RAMP" --json "$json" --no-progress \
            "${room_flags[@]}" "${BOT_FLAGS[@]}" >"$OUT/bots-$tag.log" 2>&1 &
        bots_pid=$!
        PIDS+=("$bots_pid")

        # The bots play for DURATION seconds after their ramp: measure inside
        # that, SETTLE seconds after the ramp ends, ending 3 s before they
        # stop.
        sleep $((ramp_s + SETTLE))
        status "$port" a
        if [ -n "${PERF:-}" ] && command -v perf >/dev/null; then
            # Where the server's time goes during the window (software clock:
            # no hardware counters in this VM).
            graph=()
            [ "$PERF" = callgraph ] && graph=(-g)
            # System calls by kind, counted (tracepoints) over the same window.
            perf stat -x, -o "$OUT/syscalls-$tag.csv" -p "$server_pid" \
                -e syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_write \
                -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_read \
                -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex \
                -- sleep "$WINDOW" >/dev/null 2>&1 &
            stat_pid=$!
            perf record -q -e cpu-clock -F 999 "${graph[@]}" -p "$server_pid" \
                -o "$OUT/perf-$tag.data" -- sleep "$WINDOW" >/dev/null 2>&1 || sleep "$WINDOW"
            wait "$stat_pid" || true
        else
            sleep "$WINDOW"
        fi
        status "$port" b

        if [ -s "$OUT/perf-$tag.data" ]; then
            {
                perf report -i "$OUT/perf-$tag.data" --no-children --sort dso --stdio 2>/dev/null \
                    | grep -E '^ +[0-9.]+%' | head -6
                echo
                perf report -i "$OUT/perf-$tag.data" --no-children --sort dso,symbol --stdio \
                    -g none 2>/dev/null | grep -E '^ +[0-9.]+%' | head -40
                if [ -s "$OUT/syscalls-$tag.csv" ]; then
                    echo
                    # perf stat counted for WINDOW seconds; the status samples
                    # bracket it with some slack: scale their rate.
                    snaps=$(jq -n --argjson w "$WINDOW" --slurpfile a "$OUT/status-$tag-a.json" \
                        --slurpfile b "$OUT/status-$tag-b.json" '
                        ($b[0].totals.snapshots_sent - $a[0].totals.snapshots_sent)
                        / ($b[0].uptime_s - $a[0].uptime_s) * $w | round')
                    echo "System calls per snapshot sent (about $snaps snapshots in the $WINDOW s counted):"
                    awk -F, -v snaps="$snaps" '$3 ~ /sys_enter_/ && snaps > 0 {
                        sub(/.*sys_enter_/, "", $3)
                        printf "  %-10s %8.3f\n", $3, $1 / snaps }' "$OUT/syscalls-$tag.csv"
                fi
                if [ "$PERF" = callgraph ] && command -v python3 >/dev/null; then
                    # By kind of work, and the kernel by system call, with the
                    # part that is the loopback peer's receive (softirq).
                    echo
                    perf script -i "$OUT/perf-$tag.data" 2>/dev/null | python3 benches/perf-split.py
                fi
            } >"$OUT/perf-$tag.txt" || true
        fi
        wait "$bots_pid" || echo "bots exited with status $? (see $OUT/bots-$tag.log)" >&2
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        PIDS=()

        [ -s "$json" ] || echo '{}' >"$json"
        jq -rn --arg layout "$layout" --argjson n "$n" --arg phases "$(phases)" --arg steal "$(steal)" \
            --arg ages "$(ages)" \
            --slurpfile idle "$OUT/status-$tag-idle.json" \
            --slurpfile a "$OUT/status-$tag-a.json" --slurpfile b "$OUT/status-$tag-b.json" '
            def r(p): (. * pow(10; p) | round) / pow(10; p);
            def mib: . / 1048576 | r(1) | tostring + " MiB";
            def us: r(0) | tostring + " µs";
            $idle[0] as $idle | $a[0] as $a | $b[0] as $b
            | ($b.totals.snapshots_sent - $a.totals.snapshots_sent) as $snaps
            | ($b.process.cpu_seconds - $a.process.cpu_seconds) as $cpu
            | ($b.uptime_s - $a.uptime_s) as $dt
            | ($b.rooms | map(.players) | add // 0) as $players
            | ([$players, 1] | max) as $per
            | $b.tick_us as $t
            | [ $layout, $n, $players,
                ($b.rooms | length),
                ($b.rooms | map(.entities) | max // 0),
                (if $snaps > 0 then ($cpu / $snaps * 1e6 | r(2)) else "n/a" end),
                ($cpu / $dt | r(2)),
                ($snaps / $dt | round),
                ($idle.process.rss_bytes | mib),
                ($b.process.rss_bytes | mib),
                ((($b.process.rss_bytes - $idle.process.rss_bytes) / $per / 1024 | r(1) | tostring) + " KiB"),
                ($t.p50_us | us), ($t.p99_us | us), ($t.max_us | us),
                (($t.p99_us / $t.budget_us * 100 | r(1) | tostring) + " %"),
                $phases,
                ($b.rooms | map(.tick_us.late_p99_us) | max // 0 | us),
                (($b.totals.bytes_out - $a.totals.bytes_out) / $dt / $per | round),
                (($b.totals.snapshots_full - $a.totals.snapshots_full) / $dt | r(1)),
                $ages,
                $steal
              ] | map(tostring) | "| " + join(" | ") + " |"' >>"$SERVER_ROWS"
        jq -rn --arg layout "$layout" --argjson n "$n" --arg kind "$BOT_KIND" \
            --slurpfile bots "$json" '
            def r(p): (. * pow(10; p) | round) / pow(10; p);
            def num(p): if type == "number" then r(p) else "?" end;
            $bots[0]
            | [ $layout, $n,
                ($kind + (if (.snapshots_by_datagram // 0) > 0 and (.snapshots_received // 0) > 0
                    then " (\(.snapshots_by_datagram / .snapshots_received * 100 | r(1))% of snapshots by datagram)"
                    else "" end)),
                (.clients_connected // "?"),
                (.rooms // "?"),
                (.disconnects // "?"),
                (.snapshots_per_client_per_s | num(1)),
                (.bytes_received_per_client_per_s // null | if . == null then "?" else (. / 1024 | r(1)) end),
                ((.input_ack_latency_ms.p50 | num(1) | tostring) + " / "
                    + (.input_ack_latency_ms.p99 | num(1) | tostring)),
                (.rtt_ms.p99 | num(1)),
                ((.join_time_ms.p50 | num(1) | tostring) + " / "
                    + (.join_time_ms.p99 | num(1) | tostring)),
                (if .light_mode == true then "not checked" else (.desyncs // "?") end),
                (if .bot_cpu_percent_full_load != null
                    then (.bot_cpu_percent_full_load | num(0))
                    else ((.bot_cpu_percent | num(0) | tostring) + " (run)") end),
                (.input_send_lateness_ms.p99 | num(1)),
                (if has("bot_cpu_saturated") then .bot_cpu_saturated else "?" end),
                (if has("healthy") then
                    # Connections the server dropped and the bots resumed
                    # make a run unhealthy (a problem in the report): say
                    # how many.
                    ((.resume_triggers // {}) | to_entries
                        | map(select(.key != "chaos") | .value) | add // 0) as $lost
                    | (.healthy | tostring)
                        + (if $lost > 0 then " (\($lost) connections lost)" else "" end)
                  else "?" end)
              ] | map(tostring) | "| " + join(" | ") + " |"' >>"$BOT_ROWS"
        tail -n1 "$SERVER_ROWS" >&2
        tail -n1 "$BOT_ROWS" >&2
    done
done

# The CPU's family and model, not only its name: a VM may give one bare
# name ("AMD EPYC") to different generations of core.
cpu_field() {
    awk -F': *' -v k="$1" '$0 == "" { exit } { sub(/[ \t]+$/, "", $1) } $1 == k { print $2; exit }' /proc/cpuinfo
}
CPU="$(cpu_field 'model name') (family $(cpu_field 'cpu family') model $(cpu_field model), cache size $(cpu_field 'cache size'))"

{
    echo "Machine: $(nproc) cores, $CPU; $PINNING; $BOT_KIND bots."
    echo "Runs: ${DURATION} s of play after a ramp of ${RAMP} bots/s, 30 Hz ticks and snapshots; measured window ${WINDOW} s, from ${SETTLE} s after the ramp. Layouts: single = one room of every client with ${NPCS} NPCs; rooms = matchmaking into rooms of ${ROOM_CAPACITY} players with ${ROOM_NPCS} NPCs each."
    echo "Load average before the runs: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "Server (its own /status.json over the window; players summed over rooms, tick from the worst room):"
    echo
    echo "| layout | clients | players | rooms | entities (largest room) | server CPU µs/client/snapshot | server CPU (cores) | snapshots/s | RSS idle | RSS loaded | RSS/client | tick p50 | tick p99 | tick max | p99 / budget | tick phases, mean µs: ingest / simulate / snapshot | late p99 | bytes out/client/s | full snapshots/s | baseline 1 / ≤ 3 ticks old, % | $STEAL_HEAD |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$SERVER_ROWS"
    echo
    echo "Bots (the swarm's report):"
    echo
    echo "| layout | clients | bots | connected | rooms seen | disconnects | snapshots/client/s | KiB/client/s | input→ack p50 / p99 ms | rtt p99 ms | join p50 / p99 ms | desyncs | bot CPU % | bot timer lateness p99 ms | bots saturated | healthy |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    cat "$BOT_ROWS"
} >"$TABLE"
cat "$TABLE"
