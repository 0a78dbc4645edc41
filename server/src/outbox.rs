//! One client's outgoing bytes, shared by two writers that never wait on
//! each other: the room's fan-out ([`crate::fanout`]), which writes every
//! client's snapshot right after a tick is published without waking a task
//! per client, and the connection's writer task, which writes everything
//! else (welcome, pongs, the close) and finishes any write the socket did
//! not take at once.
//!
//! Every write happens under the outbox's lock, so frames never interleave:
//! whatever the socket refused waits in `pending`, and nothing else is
//! written before it. The lock is a std mutex held for a non-blocking
//! `write` system call at most, never across an `.await`.

use std::io::{ErrorKind, IoSlice};
use std::net::Shutdown;
use std::sync::{Mutex, MutexGuard};

use fastwebsockets::{Frame, OpCode, Payload};
use shared::protocol::DisconnectReason;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a write did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFailed {
    /// The client stopped reading for longer than the write timeout: the
    /// server drops it as too slow.
    TimedOut,
    /// The socket is dead (reset, or closed under the write): the client
    /// is gone, nobody to tell.
    Broken,
}

/// What became of a snapshot the fan-out offered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Written, or queued behind nothing for the writer task to finish:
    /// the client will receive it.
    Sent,
    /// Bytes of an earlier frame still wait for the socket: the client is
    /// behind, and this snapshot is skipped (a newer one supersedes it).
    Busy,
    /// The connection is closing: stop serving it.
    Closed,
}

/// One client's write side.
#[derive(Debug)]
pub(crate) struct Outbox {
    half: OwnedWriteHalf,
    state: Mutex<State>,
    /// Wakes the writer task: bytes wait for the socket, or the fan-out
    /// asks for a close.
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes accepted but not yet written, from `sent` on. Empty in steady
    /// state: it holds only what a full socket buffer refused.
    pending: Vec<u8>,
    sent: usize,
    /// No more snapshots: the connection is closing or closed.
    closed: bool,
    /// A write failed or timed out, and why; nothing more is written.
    failed: Option<WriteFailed>,
    /// The write half was shut down (FIN sent).
    shut: bool,
    /// A close the fan-out asks the writer task to make.
    close_request: Option<DisconnectReason>,
}

impl State {
    fn has_pending(&self) -> bool {
        self.sent < self.pending.len()
    }

    /// What an offer meets now: `Closed`, `Busy` with an earlier frame, or
    /// `Sent` when the socket may be tried.
    fn readiness(&self) -> Offer {
        if self.closed {
            Offer::Closed
        } else if self.has_pending() {
            Offer::Busy
        } else {
            Offer::Sent
        }
    }

    /// Marks the outbox failed for `why`, which it returns.
    fn fail(&mut self, why: WriteFailed) -> WriteFailed {
        self.failed = Some(why);
        self.closed = true;
        self.pending = Vec::new();
        self.sent = 0;
        why
    }
}

/// A pending buffer grown past this by a backlog is given back once empty.
const KEEP_PENDING: usize = 64 * 1024;

impl Outbox {
    pub(crate) fn new(half: OwnedWriteHalf) -> Self {
        Self {
            half,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// For the fan-out, before it encodes: what [`Self::offer`] would
    /// answer without writing anything, `Closed` or `Busy`, or `Sent` when
    /// it would try the socket. A client that cannot take a snapshot is not
    /// worth its encode.
    pub(crate) fn precheck(&self) -> Offer {
        self.lock().readiness()
    }

    /// For the fan-out: writes `parts` (one or more whole frames) now, as
    /// far as the socket takes them; the rest waits in the outbox and the
    /// writer task finishes it under the write timeout.
    pub(crate) fn offer(&self, parts: &[IoSlice<'_>]) -> Offer {
        let mut state = self.lock();
        match state.readiness() {
            Offer::Sent => {}
            refused => return refused,
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let written = match self.half.try_write_vectored(parts) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => {
                state.fail(WriteFailed::Broken);
                drop(state);
                self.wake.notify_one();
                return Offer::Closed;
            }
        };
        if written < total {
            state.pending.clear();
            state.sent = 0;
            let mut skip = written;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    state.pending.extend_from_slice(&part[skip..]);
                    skip = 0;
                }
            }
            drop(state);
            self.wake.notify_one();
        }
        Offer::Sent
    }

    /// For the fan-out: asks the writer task to close the connection with
    /// `reason`, and stops the snapshots.
    pub(crate) fn request_close(&self, reason: DisconnectReason) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        state.close_request = Some(reason);
        drop(state);
        self.wake.notify_one();
    }

    /// For the writer task: resolves when the fan-out left bytes to finish,
    /// asked for a close, or saw the socket fail.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// For the writer task: the close the fan-out asked for, if any.
    pub(crate) fn take_close_request(&self) -> Option<DisconnectReason> {
        self.lock().close_request.take()
    }

    /// For the writer task: queues `bytes` (whole frames) behind anything
    /// pending and writes until all is out, or fails at `deadline`.
    pub(crate) async fn send(&self, bytes: &[u8], deadline: Instant) -> Result<(), WriteFailed> {
        {
            let mut state = self.lock();
            if let Some(why) = state.failed {
                return Err(why);
            }
            state.pending.extend_from_slice(bytes);
        }
        self.flush(deadline).await
    }

    /// For the writer task: the close frames. Stops the snapshots, writes
    /// `bytes` after anything pending, then shuts the write half (FIN).
    pub(crate) async fn close_with(
        &self,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(), WriteFailed> {
        self.lock().closed = true;
        let sent = self.send(bytes, deadline).await;
        self.finish();
        sent
    }

    /// Writes what is pending until none is left, or fails at `deadline`.
    pub(crate) async fn flush(&self, deadline: Instant) -> Result<(), WriteFailed> {
        loop {
            {
                let mut state = self.lock();
                if let Some(why) = state.failed {
                    return Err(why);
                }
                while state.has_pending() {
                    match self.half.try_write(&state.pending[state.sent..]) {
                        Ok(n) if n > 0 => state.sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Ok(_) | Err(_) => return Err(state.fail(WriteFailed::Broken)),
                    }
                }
                if !state.has_pending() {
                    state.pending.clear();
                    state.sent = 0;
                    if state.pending.capacity() > KEEP_PENDING {
                        state.pending = Vec::new();
                    }
                    return Ok(());
                }
            }
            let why = match tokio::time::timeout_at(deadline, self.half.writable()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => WriteFailed::Broken,
                Err(_) => WriteFailed::TimedOut,
            };
            return Err(self.lock().fail(why));
        }
    }

    /// The connection is over: no more snapshots, and the write half is
    /// shut down (FIN) if it was not yet. The socket itself closes when the
    /// last holder (the fan-out, at its next tick) lets go.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        state.closed = true;
        if !state.shut {
            state.shut = true;
            let stream: &tokio::net::TcpStream = self.half.as_ref();
            // Fails only on a socket that is already gone.
            let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
        }
    }
}

/// Appends one unmasked (server) WebSocket frame to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut head = [0; 10];
    let len = put_head(&mut head, opcode, payload);
    out.extend_from_slice(&head[..len]);
    out.extend_from_slice(payload);
}

/// Writes the header of a final, unmasked frame of `opcode` carrying
/// `payload` into `head`; returns its length (2, 4 or 10 bytes).
pub(crate) fn put_head(head: &mut [u8; 10], opcode: OpCode, payload: &[u8]) -> usize {
    Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Outbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (_, half) = server.into_split();
        (Outbox::new(half), client)
    }

    #[test]
    fn frame_headers_follow_rfc_6455() {
        let mut out = Vec::new();
        put_frame(&mut out, OpCode::Binary, &[7; 3]);
        assert_eq!(out, [0x82, 3, 7, 7, 7]);
        let mut head = [0; 10];
        assert_eq!(put_head(&mut head, OpCode::Binary, &[0; 300]), 4);
        assert_eq!(head[..4], [0x82, 126, 1, 44]);
        assert_eq!(put_head(&mut head, OpCode::Binary, &vec![0; 70_000]), 10);
        assert_eq!(head[..2], [0x82, 127]);
        assert_eq!(
            u64::from_be_bytes(head[2..10].try_into().expect("8 bytes")),
            70_000
        );
        out.clear();
        put_frame(&mut out, OpCode::Ping, &[]);
        assert_eq!(out, [0x89, 0]);
    }

    /// A client that stops reading: the fan-out's offers fill the socket,
    /// the rest waits whole, later offers are skipped, and nothing is
    /// interleaved or lost once the client reads again.
    #[tokio::test]
    async fn a_full_socket_keeps_frames_whole_and_in_order() {
        let (outbox, mut client) = pair().await;
        let chunk = vec![0xab_u8; 64 * 1024];
        let mut offered = 0usize;
        let mut busy = 0;
        for i in 0..200u8 {
            let head = [i; 4];
            match outbox.offer(&[IoSlice::new(&head), IoSlice::new(&chunk)]) {
                Offer::Sent => offered += 1,
                Offer::Busy => busy += 1,
                Offer::Closed => panic!("closed"),
            }
        }
        assert!(busy > 0, "the socket never filled");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.expect("read");
            all
        });
        outbox.send(b"last", deadline).await.expect("send");
        outbox.finish();
        drop(outbox);
        let all = reader.await.expect("reader");
        assert_eq!(all.len(), offered * (4 + chunk.len()) + 4);
        for (n, frame) in all[..all.len() - 4].chunks(4 + chunk.len()).enumerate() {
            assert_eq!(frame[..4], [n as u8; 4], "frame {n} whole and in order");
            assert!(frame[4..].iter().all(|&b| b == 0xab));
        }
        assert_eq!(&all[all.len() - 4..], b"last");
    }

    #[tokio::test]
    async fn a_close_request_stops_the_snapshots_and_reaches_the_writer() {
        let (outbox, _client) = pair().await;
        outbox.request_close(DisconnectReason::IdleTimeout);
        outbox.woken().await;
        assert_eq!(
            outbox.take_close_request(),
            Some(DisconnectReason::IdleTimeout)
        );
        assert_eq!(outbox.offer(&[IoSlice::new(b"x")]), Offer::Closed);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_fails_the_flush_at_its_deadline() {
        let (outbox, _client) = pair().await;
        let chunk = vec![0u8; 1 << 20];
        let deadline = Instant::now() + std::time::Duration::from_millis(200);
        let mut result = Ok(());
        for _ in 0..64 {
            result = outbox.send(&chunk, deadline).await;
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(WriteFailed::TimedOut),
            "64 MiB fit in the socket buffers"
        );
        assert_eq!(outbox.offer(&[IoSlice::new(b"x")]), Offer::Closed);
    }

    /// A client whose connection was reset is gone, not slow: the failure
    /// says so (the writer task then counts no kick).
    #[tokio::test]
    async fn a_reset_connection_fails_as_broken_not_slow() {
        let (outbox, client) = pair().await;
        // Closing with unread data and no linger sends a reset.
        assert_eq!(outbox.offer(&[IoSlice::new(b"unread")]), Offer::Sent);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(client);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut result = Ok(());
        for _ in 0..3 {
            result = outbox.send(b"more", deadline).await;
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(WriteFailed::Broken));
    }
}
