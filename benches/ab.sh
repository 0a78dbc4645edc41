#!/usr/bin/env bash
# Diff + encode of two or more builds, timed alternately: the comparison
# BENCHMARKS.md and benches/HISTORY.md quote for every change to the
# snapshot path. On a shared machine the same binary moves by up to 70%
# from one minute to the next, so builds are only compared when their
# rounds interleave, and each is summarized by the median of its rounds.
#
#   benches/ab.sh HEAD~1 HEAD          # the last commit against its parent
#   benches/ab.sh main .               # main against the working tree as it is
#   ROUNDS=6 CASES="1000 1 150;5000 10 30" benches/ab.sh v1 v2 v3
#
# Each argument is a git revision from session 25 on (whose `profile` has
# `time-split`), or `.` for the working tree with its uncommitted changes.
# Each is built once (`cargo build --profile bench -p benches --bin
# profile`, in a worktree for a revision), then every round
# runs `profile time-split ENTITIES AGE PASSES` for each case and each
# build in turn: the diff alone, then the encoder alone over the same
# messages, medians of PASSES passes over a 64-tick history (see
# benches/src/bin/profile.rs).
#
# Environment (defaults in brackets):
#   ROUNDS   rounds per build and case [4]
#   CASES    cases, `;`-separated, each `ENTITIES AGE PASSES`
#            ["1000 1 150;1000 10 150;5000 10 30"]
#   CORE     the core to pin the timings to, with taskset when it exists
#            and the machine has more than one core [1]
#   OUT      a directory for the builds and the raw timings [a temporary
#            one, removed at the end]
#
# Prints, per case and build, diff / encode / total µs per message (medians
# of the rounds), the range of the rounds' totals, and the change of the
# median total against the first build. Ranges that overlap mean the
# difference is within what this machine varies by.

set -euo pipefail

if [ "$#" -lt 2 ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-4}
CASES=${CASES:-1000 1 150;1000 10 150;5000 10 30}
CORE=${CORE:-1}
case $ROUNDS in
    '' | *[!0-9]* | 0) echo "ROUNDS must be a positive number" >&2; exit 2 ;;
esac

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    KEEP=1
else
    OUT=$(mktemp -d)
    KEEP=
fi
WORKTREES=()
cleanup() {
    for wt in "${WORKTREES[@]}"; do
        git -C "$ROOT" worktree remove --force "$wt" 2>/dev/null || true
    done
    git -C "$ROOT" worktree prune 2>/dev/null || true
    if [ -z "$KEEP" ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
    PIN=(taskset -c "$CORE")
fi

# Build each argument's profile binary as $OUT/bin-N.
NAMES=()
n=0
for rev in "$@"; do
    if [ "$rev" = . ]; then
        src=$ROOT
        NAMES+=("working tree")
    else
        sha=$(git -C "$ROOT" rev-parse --verify --short "$rev^{commit}") || {
            echo "not a revision: $rev" >&2
            exit 2
        }
        src=$OUT/wt-$n
        git -C "$ROOT" worktree add --quiet --detach "$src" "$sha"
        WORKTREES+=("$src")
        NAMES+=("$rev ($sha)")
    fi
    echo "building ${NAMES[$n]}" >&2
    (cd "$src" && CARGO_TARGET_DIR=$OUT/target cargo build --quiet --profile bench -p benches --bin profile)
    cp "$OUT/target/release/profile" "$OUT/bin-$n"
    n=$((n + 1))
done

# Alternate: every round runs each case on each build in turn. One line
# per timing in $OUT/timings: case index, build index, diff ns, encode ns.
IFS=';' read -r -a CASE_LIST <<<"$CASES"
: >"$OUT/timings"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for c in "${!CASE_LIST[@]}"; do
        read -r -a args <<<"${CASE_LIST[$c]}"
        for b in $(seq 0 $((n - 1))); do
            line=$("${PIN[@]}" "$OUT/bin-$b" time-split "${args[@]}")
            echo "$line" | sed -E -n \
                "s/.*diff median ([0-9]+) ns, encode median ([0-9]+) ns.*/$c $b \1 \2/p" \
                >>"$OUT/timings"
        done
    done
done

expected=$((ROUNDS * ${#CASE_LIST[@]} * n))
if [ "$(wc -l <"$OUT/timings")" -ne "$expected" ]; then
    echo "expected $expected timings, got $(wc -l <"$OUT/timings") (see $OUT/timings)" >&2
    KEEP=1
    exit 1
fi

echo "Alternating rounds of \`profile time-split\`, $ROUNDS per build; µs per message, medians of the rounds."
[ "${#PIN[@]}" -gt 0 ] && echo "Pinned to core $CORE." || echo "Not pinned."
for c in "${!CASE_LIST[@]}"; do
    read -r entities age passes <<<"${CASE_LIST[$c]}"
    echo
    echo "$entities entities, baseline age $age ($passes passes a round): diff / encode / total [range of totals]"
    # One pass over the timings per case: each build's medians, the range
    # of its totals, and its median total against the first build's.
    printf '%s\n' "${NAMES[@]}" | awk -v c="$c" -v n="$n" -v timings="$OUT/timings" '
        # Sorts a[1..k] in place and returns its median.
        function median(a, k,    i, j, t) {
            for (i = 2; i <= k; i++) {
                t = a[i]
                for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
                a[j + 1] = t
            }
            return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
        }
        { name[NR - 1] = $0 }
        END {
            while ((getline line < timings) > 0) {
                split(line, f, " ")
                if (f[1] != c) continue
                b = f[2]; k = ++count[b]
                diff[b, k] = f[3]; enc[b, k] = f[4]
            }
            for (b = 0; b < n; b++) {
                k = count[b]
                for (i = 1; i <= k; i++) { d[i] = diff[b, i]; e[i] = enc[b, i]; t[i] = d[i] + e[i] }
                md = median(d, k); me = median(e, k); mt = median(t, k)
                printf "  %-28s %.3f / %.3f / %.3f [%.3f-%.3f]", name[b], md / 1000, me / 1000, mt / 1000, t[1] / 1000, t[k] / 1000
                if (b == 0) first = mt
                else printf "  %+.1f%%", (mt / first - 1) * 100
                printf "\n"
            }
        }'
done
