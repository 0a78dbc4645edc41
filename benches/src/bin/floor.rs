//! The transport floor: what one TCP socket per client costs the kernel on
//! this machine, with no runtime, no framing and no snapshot work. A server
//! thread writes one message of `--bytes` to each of `--clients` loopback
//! connections and reads `--inbound` small messages back from each; a peer
//! thread answers like a client. The server thread's CPU time per client per
//! snapshot (from `/proc/thread-self/schedstat`) is the least any server
//! that writes a snapshot per client per tick over TCP pays here, to set
//! beside the end-to-end figure (`benches/loadtest.sh`), which is measured
//! the same way, loopback delivery to the peer included.
//!
//! `cargo run --release -p benches --bin floor`
//!
//! The threads are pinned to cores 0 and 1 when there are two, as the load
//! test pins the server and the bots. Blocking sockets, in lockstep rounds:
//! all writes, then all reads, so that reads rarely wait.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Client counts, snapshot sizes and inbound messages per snapshot measured.
const CLIENTS: [usize; 2] = [200, 1000];
/// About a rooms-of-16 snapshot (55 B) and a one-room-of-200 one (520 B).
const BYTES: [usize; 2] = [64, 512];
/// One input carrying the ack (protocol 3), or an input and an ack (2).
const INBOUND: [usize; 2] = [1, 2];
/// Size of one inbound message, as a framed input (masked header included).
const INBOUND_BYTES: usize = 20;
/// Snapshots per connection per measurement, and measurements per case.
const ROUNDS: usize = 150;
const REPEATS: usize = 5;

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[expect(unsafe_code, reason = "sched_setaffinity has no safe wrapper in std")]
fn pin_to(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it
    // for core < CPU_SETSIZE; sched_setaffinity(0, ...) affects this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Server-thread CPU µs per client per snapshot, one measurement.
fn measure(clients: usize, bytes: usize, inbound: usize, pin: bool) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let peer = std::thread::spawn(move || -> std::io::Result<()> {
        if pin {
            pin_to(1);
        }
        let mut conns = (0..clients)
            .map(|_| {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                Ok(s)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut snapshot = vec![0u8; bytes];
        let input = [7u8; INBOUND_BYTES];
        for _ in 0..ROUNDS {
            for c in &mut conns {
                c.read_exact(&mut snapshot)?;
                for _ in 0..inbound {
                    c.write_all(&input)?;
                }
            }
        }
        Ok(())
    });
    if pin {
        pin_to(0);
    }
    let mut conns = (0..clients)
        .map(|_| {
            let (s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let snapshot = vec![1u8; bytes];
    let mut input = [0u8; INBOUND_BYTES];
    let start = thread_cpu_ns();
    for _ in 0..ROUNDS {
        for c in &mut conns {
            c.write_all(&snapshot)?;
        }
        for c in &mut conns {
            for _ in 0..inbound {
                c.read_exact(&mut input)?;
            }
        }
    }
    let spent = thread_cpu_ns() - start;
    peer.join().expect("peer thread")?;
    Ok(spent as f64 / 1000.0 / (clients * ROUNDS) as f64)
}

/// Wall time of one null system call (`getppid`), ns: the part of the floor
/// that batching system calls could save.
fn null_syscall_ns() -> f64 {
    const CALLS: u32 = 1_000_000;
    let start = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(std::os::unix::process::parent_id());
    }
    start.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn main() -> std::io::Result<()> {
    let pin = std::thread::available_parallelism().map_or(1, usize::from) >= 2;
    let started = Instant::now();
    println!(
        "A null system call (getppid): {:.0} ns.\n",
        null_syscall_ns()
    );
    println!(
        "Server-thread CPU per client per snapshot, µs: median (min–max) of {REPEATS} runs of \
         {ROUNDS} snapshots per client; threads {}.\n",
        if pin {
            "pinned to cores 0 and 1"
        } else {
            "not pinned"
        }
    );
    println!(
        "| clients | snapshot bytes | inbound messages per snapshot | µs per client per snapshot |"
    );
    println!("|---:|---:|---:|---:|");
    for clients in CLIENTS {
        for bytes in BYTES {
            for inbound in INBOUND {
                let mut runs = (0..REPEATS)
                    .map(|_| measure(clients, bytes, inbound, pin))
                    .collect::<std::io::Result<Vec<f64>>>()?;
                runs.sort_by(f64::total_cmp);
                println!(
                    "| {clients} | {bytes} | {inbound} | {:.2} ({:.2}–{:.2}) |",
                    runs[REPEATS / 2],
                    runs[0],
                    runs[REPEATS - 1]
                );
            }
        }
    }
    println!("\n({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}
