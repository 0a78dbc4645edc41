#!/usr/bin/env python3
"""Splits a server profile into where the time goes, by kind of work.

    perf script -i perf.data | benches/perf-split.py

Reads `perf script` output of a call-graph profile (`perf record -g`, as
`PERF=callgraph benches/loadtest.sh` takes) and prints the share of samples
in each bucket:

* kernel, split by the system call the sample is under (a sample with no
  system call frame is an interrupt or the scheduler), and within each,
  the part under the network softirq (`net_rx_action`). On loopback the
  sender's system call delivers the packet to the receiving socket in that
  softirq, so this is the *receiver's* TCP work charged to the sender: on a
  real network it would run on the other machine, or in this machine's
  softirq for received packets;
* user space, by the leaf function's crate or library (user-space stacks
  are not walked: the release build keeps no frame pointers).

Only the standard library; no arguments.
"""

import re
import sys
from collections import Counter

# Leaf functions by crate or library, first match wins. Matched against the
# symbol without a leading `<`, `&` or `mut ` (trait impls print as
# `<tokio::... as Future>::poll`).
USER_BUCKETS = [
    ("tracing spans (Instrumented::poll, subscriber enter/exit)", r"^tracing"),
    ("WebSocket framing, HTTP (fastwebsockets, hyper)", r"^(fastwebsockets|hyper|http)::|^server::http"),
    ("connection reader/writer (server::connection)", r"^server::connection"),
    ("room tick, game (server::room, server::game)", r"^server::(room|game)"),
    ("snapshots: diff, encode, checksum (shared)", r"^shared::"),
    ("other server code", r"^server::"),
    ("tokio: timers (timeout, sleep, wheel)", r"^tokio::(time|runtime::time)"),
    ("tokio: channels, notify (mpsc, watch, oneshot)", r"^tokio::sync"),
    ("tokio: I/O readiness, socket reads and writes", r"^tokio::(runtime::io|net|io)|^mio::"),
    ("tokio: scheduler, tasks, wakers", r"^tokio::"),
    ("bytes, Arc, Vec, futures glue (core, alloc, std)", r"^(bytes|alloc|core|std|F as core)::|^F as "),
    ("malloc/free", r"^(malloc|free|cfree|_int_\w+|__libc_malloc|__libc_free|realloc|tcache\w*)(@.*)?$"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set|cmp)"),
    ("clock_gettime (vDSO)", r"clock_gettime|__vdso"),
    ("libc system call stubs", r"^(__libc_recv|__send|__libc_send|syscall|__GI_|epoll_wait|writev|__writev|read|write)"),
]

# The system call a kernel sample is under, from the first user-space frame
# (the libc stub that entered the kernel) or, failing that, kernel frames.
SYSCALL_BY_STUB = [
    ("send (snapshots, pongs)", r"writev|__send|sendto|sendmsg|__libc_write|^write$"),
    ("receive (inputs, acks)", r"recv|__libc_read|^read$|readv"),
    ("epoll_wait", r"epoll_wait"),
    ("futex (thread wake/sleep)", r"^syscall$|futex|pthread_cond|__lll"),
]
SYSCALL_BY_KERNEL = [
    ("send (snapshots, pongs)", r"do_writev|__sys_sendto|tcp_sendmsg"),
    ("receive (inputs, acks)", r"__sys_recvfrom|tcp_recvmsg|ksys_read"),
    ("epoll_wait", r"do_epoll_wait|ep_poll"),
    ("futex (thread wake/sleep)", r"futex"),
]
SOFTIRQ = ("net_rx_action", "__do_softirq", "handle_softirqs", "do_softirq.part.0")


def kernel_bucket(frames):
    """The system call (or none) of a sample whose leaf is in the kernel."""
    kernel = [sym for sym, dso in frames if "kernel" in dso]
    user = [sym for sym, dso in frames if "kernel" not in dso]
    if "exit_to_user_mode_loop" in kernel and any("schedule" in k for k in kernel):
        return "scheduler: preempted or switching on return to user space"
    if user:
        for name, pattern in SYSCALL_BY_STUB:
            if re.search(pattern, user[0]):
                return name
    for name, pattern in SYSCALL_BY_KERNEL:
        if any(re.search(pattern, k) for k in kernel):
            return name
    if "entry_SYSCALL_64_after_hwframe" in kernel:
        return "other system calls"
    return "no system call (interrupts, scheduler)"


def classify(frames):
    """frames: list of (symbol, dso), leaf first."""
    leaf_sym, leaf_dso = frames[0]
    if "kernel" in leaf_dso:
        where = "kernel: " + kernel_bucket(frames)
        if any(sym in SOFTIRQ for sym, _ in frames):
            return where + ": loopback delivery to the peer (softirq)"
        return where + ": own socket"
    plain = re.sub(r"^(<|&|mut )+", "", leaf_sym)
    for name, pattern in USER_BUCKETS:
        if re.search(pattern, plain):
            return "user: " + name
    return "user: other (%s)" % leaf_dso.rsplit("/", 1)[-1]


def samples(lines):
    header = None
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if header is not None and frames:
                yield header, frames
            header, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            header = line
            continue
        m = re.match(r"\s+[0-9a-f]+ (.+?)(?:\+0x[0-9a-f]+)? \((.*)\)$", line)
        if m:
            frames.append((m.group(1), m.group(2)))
        else:
            frames.append(("?", "?"))
    if header is not None and frames:
        yield header, frames


def main():
    counts = Counter()
    total = 0
    for _header, frames in samples(sys.stdin):
        counts[classify(frames)] += 1
        total += 1
    if total == 0:
        print("no samples (was the profile taken with -g?)", file=sys.stderr)
        return 1
    groups = Counter()
    for key, n in counts.items():
        groups[key.split(":")[0]] += n
    for group in ("kernel", "user"):
        print("%6.2f%%  %s" % (100.0 * groups[group] / total, group))
        for key, n in counts.most_common():
            if key.startswith(group + ":"):
                print("%6.2f%%    %s" % (100.0 * n / total, key[len(group) + 2:]))
    print("%d samples" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
