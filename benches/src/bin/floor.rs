//! The transport floor: what one TCP socket per client costs the kernel on
//! this machine, with no runtime, no framing and no snapshot work. A server
//! thread writes one message of each size in [`BYTES`] to each of
//! [`CLIENTS`] loopback connections and reads [`INBOUND`] small messages
//! back from each; a peer thread answers like a client. The server thread's CPU time per client per
//! snapshot (from `/proc/thread-self/schedstat`) is the least any server
//! that writes a snapshot per client per tick over TCP pays here, to set
//! beside the end-to-end figure (`benches/loadtest.sh`), which is measured
//! the same way, loopback delivery to the peer included.
//!
//! `cargo run --release -p benches --bin floor [tcp|udp]` (both by
//! default; one, to profile it alone with `perf record`)
//!
//! The threads are pinned to cores 0 and 1 when there are two, as the load
//! test pins the server and the bots. Blocking sockets, in lockstep rounds:
//! all writes, then all reads, so that reads rarely wait.
//!
//! Then the same exchange over UDP, the transport a server would move to for
//! batched sends: one server socket for every client, `sendmmsg` and
//! `recvmmsg` in batches (or one `sendto` per client), each client on its
//! own socket. It bounds what any datagram transport (WebTransport
//! included) could reach on this machine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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
fn measure_tcp(clients: usize, bytes: usize, inbound: usize, pin: bool) -> std::io::Result<f64> {
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

/// Datagrams per `sendmmsg` or `recvmmsg` call in the batched UDP case.
const BATCH: usize = 64;
/// How long the UDP server waits for an answer before it calls it lost (a
/// lost datagram fails the measurement rather than hanging it).
const UDP_WAIT: Duration = Duration::from_secs(2);
/// Send and receive buffers of the UDP server socket, bytes: a round's
/// answers from every client queue on it (capped by `net.core.rmem_max`).
const UDP_BUFFER: libc::c_int = 4 << 20;

/// How the UDP server hands its datagrams to the kernel.
#[derive(Clone, Copy)]
enum Udp {
    /// One `sendto` and one `recvfrom` per datagram.
    PerDatagram,
    /// `sendmmsg` and `recvmmsg`, [`BATCH`] datagrams per call.
    Batched,
}

#[expect(unsafe_code, reason = "setsockopt has no safe wrapper in std")]
fn set_udp_buffers(socket: &UdpSocket) -> std::io::Result<()> {
    let value = UDP_BUFFER;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: the fd is open for the call; the value is a c_int and its
        // length says so.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn sockaddr_in(addr: SocketAddr) -> std::io::Result<libc::sockaddr_in> {
    let SocketAddr::V4(v4) = addr else {
        return Err(std::io::Error::other("the floor binds IPv4 loopback only"));
    };
    Ok(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    })
}

/// Sends `payload` to each of `to` (the first [`BATCH`] of it) with one
/// `sendmmsg`; returns how many went out.
#[expect(unsafe_code, reason = "sendmmsg has no safe wrapper in std")]
fn send_batch(
    socket: &UdpSocket,
    to: &mut [libc::sockaddr_in],
    payload: &[u8],
) -> std::io::Result<usize> {
    let n = to.len().min(BATCH);
    let to = &mut to[..n];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (h, addr) in headers.iter_mut().zip(to.iter_mut()) {
        h.msg_hdr.msg_name = (&raw mut *addr).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &raw mut iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `to.len()` headers point at live addresses and at
    // one iovec over `payload`, which the kernel only reads; all outlive
    // the call.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            to.len() as libc::c_uint,
            0,
        )
    };
    usize::try_from(sent).map_err(|_| std::io::Error::last_os_error())
}

/// Receives up to `want` (at most [`BATCH`]) datagrams with one `recvmmsg`,
/// waiting (up to the socket's read timeout) for the first only; returns
/// how many arrived.
#[expect(unsafe_code, reason = "recvmmsg has no safe wrapper in std")]
fn receive_batch(
    socket: &UdpSocket,
    buffers: &mut [[u8; INBOUND_BYTES]; BATCH],
    want: usize,
) -> std::io::Result<usize> {
    let want = want.min(BATCH);
    let mut iovs = buffers.each_mut().map(|b| libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    });
    // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (h, iov) in headers.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `want` headers each point at one iovec over a live
    // buffer of its stated length; all outlive the call. No timeout
    // pointer: the socket's read timeout bounds the wait.
    let got = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            want as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    usize::try_from(got).map_err(|_| std::io::Error::last_os_error())
}

/// [`measure_tcp`] over UDP with one inbound datagram per snapshot: the
/// server thread sends each client a datagram of `bytes` from its one
/// socket and reads every client's answer back.
fn measure_udp(clients: usize, bytes: usize, how: Udp, pin: bool) -> std::io::Result<f64> {
    let server = UdpSocket::bind("127.0.0.1:0")?;
    set_udp_buffers(&server)?;
    server.set_read_timeout(Some(UDP_WAIT))?;
    let server_addr = server.local_addr()?;
    let peers = (0..clients)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(server_addr)?;
            s.set_read_timeout(Some(UDP_WAIT))?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let addrs = peers
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut raw_addrs = addrs
        .iter()
        .map(|&a| sockaddr_in(a))
        .collect::<std::io::Result<Vec<_>>>()?;
    let peer = std::thread::spawn(move || -> std::io::Result<()> {
        if pin {
            pin_to(1);
        }
        let mut snapshot = vec![0u8; bytes];
        let input = [7u8; INBOUND_BYTES];
        for _ in 0..ROUNDS {
            for p in &peers {
                p.recv(&mut snapshot)?;
                p.send(&input)?;
            }
        }
        Ok(())
    });
    if pin {
        pin_to(0);
    }
    let snapshot = vec![1u8; bytes];
    let mut input = [[0u8; INBOUND_BYTES]; BATCH];
    let start = thread_cpu_ns();
    let sent = (|| -> std::io::Result<()> {
        for _ in 0..ROUNDS {
            match how {
                Udp::PerDatagram => {
                    for &to in &addrs {
                        server.send_to(&snapshot, to)?;
                    }
                    for _ in 0..clients {
                        server.recv_from(&mut input[0])?;
                    }
                }
                Udp::Batched => {
                    let mut done = 0;
                    while done < clients {
                        let end = (done + BATCH).min(clients);
                        done += send_batch(&server, &mut raw_addrs[done..end], &snapshot)?;
                    }
                    let mut got = 0;
                    while got < clients {
                        got += receive_batch(&server, &mut input, clients - got)?;
                    }
                }
            }
        }
        Ok(())
    })();
    let spent = thread_cpu_ns() - start;
    // A lost datagram times out a read on either side: report that, not a
    // figure.
    let answered = peer.join().expect("peer thread");
    sent.and(answered)
        .map_err(|e| std::io::Error::new(e.kind(), format!("a datagram was lost or late ({e})")))?;
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

/// Runs a measurement [`REPEATS`] times: "median (min–max)".
fn repeat(measure: impl Fn() -> std::io::Result<f64>) -> std::io::Result<String> {
    let mut runs = (0..REPEATS)
        .map(|_| measure())
        .collect::<std::io::Result<Vec<f64>>>()?;
    runs.sort_by(f64::total_cmp);
    Ok(format!(
        "{:.2} ({:.2}–{:.2})",
        runs[REPEATS / 2],
        runs[0],
        runs[REPEATS - 1]
    ))
}

fn main() -> std::io::Result<()> {
    let only = std::env::args().nth(1);
    let (tcp, udp) = match only.as_deref() {
        None => (true, true),
        Some("tcp") => (true, false),
        Some("udp") => (false, true),
        Some(other) => {
            eprintln!("usage: floor [tcp|udp] (not {other:?})");
            std::process::exit(2);
        }
    };
    let pin = std::thread::available_parallelism().map_or(1, usize::from) >= 2;
    let started = Instant::now();
    println!("Machine: {}.", benches::machine());
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
    if tcp {
        tcp_table(pin)?;
    }
    if udp {
        udp_table(pin)?;
    }
    println!("\n({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// One TCP connection per client.
fn tcp_table(pin: bool) -> std::io::Result<()> {
    println!(
        "| clients | snapshot bytes | inbound messages per snapshot | µs per client per snapshot |"
    );
    println!("|---:|---:|---:|---:|");
    for clients in CLIENTS {
        for bytes in BYTES {
            for inbound in INBOUND {
                let runs = repeat(|| measure_tcp(clients, bytes, inbound, pin))?;
                println!("| {clients} | {bytes} | {inbound} | {runs} |");
            }
        }
    }
    Ok(())
}

/// One UDP server socket for every client.
fn udp_table(pin: bool) -> std::io::Result<()> {
    println!(
        "\nThe same over UDP: one server socket for all clients, one datagram each way per \
         client per snapshot.\n"
    );
    println!("| clients | snapshot bytes | system calls | µs per client per snapshot |");
    println!("|---:|---:|---|---:|");
    for clients in CLIENTS {
        for bytes in BYTES {
            for (how, calls) in [
                (
                    Udp::PerDatagram,
                    "`sendto` + `recvfrom` per client".to_owned(),
                ),
                (
                    Udp::Batched,
                    format!("`sendmmsg` + `recvmmsg`, {BATCH} per call"),
                ),
            ] {
                let runs = repeat(|| measure_udp(clients, bytes, how, pin))?;
                println!("| {clients} | {bytes} | {calls} | {runs} |");
            }
        }
    }
    Ok(())
}
