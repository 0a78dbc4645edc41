//! A write deadline for the HTTP side of a connection.
//!
//! hyper has a timeout for reading a request head and none for writing a
//! response: a client that sends requests and never reads the answers
//! parks its connection in a write forever, holding one of the server's
//! `max_connections` slots (and its per-address share) for as long as it
//! likes. From many addresses, that locks out players and `/healthz`.
//! [`WriteDeadline`] fails a write, flush or shutdown that the socket has not
//! taken for [`Config::write_timeout`](crate::config::Config::write_timeout)
//! with [`std::io::ErrorKind::TimedOut`]; hyper then drops the connection and
//! its slot. Reads pass through untouched (the head's deadline is hyper's).
//!
//! A WebSocket leaves this wrapper at the upgrade: its socket is taken back
//! whole (`connection::into_tcp`), and its writes have deadlines of their own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `S` whose writes fail once one has waited `limit` for the socket.
#[derive(Debug)]
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write finds the socket full; disarmed by any progress.
    /// Boxed: only a stalled connection pays for it.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The wrapped stream.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// `poll` of a write-side operation, with the deadline: `Ready` clears
    /// it, `Pending` arms it, and a deadline that passed is the error.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        if let Poll::Ready(done) = poll(Pin::new(&mut self.inner), cx) {
            self.stalled = None;
            return Poll::Ready(done);
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer read nothing within the write timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, AsyncWrite::poll_flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, AsyncWrite::poll_shutdown)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMIT: Duration = Duration::from_millis(100);
    /// Far beyond `LIMIT`: a write that is not failed by then never is.
    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_at_the_deadline() {
        let (near, _far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, LIMIT);
        let result = tokio::time::timeout(PATIENCE, w.write_all(&[7; 1024])).await;
        let err = result
            .expect("the stalled write was never failed")
            .expect_err("64 bytes of buffer cannot take 1 KiB");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_never_cut() {
        // The reader takes 64 bytes every 40 ms: the whole write (40
        // reads, 1.6 s) lasts three times this limit, but no single wait
        // comes near it, even with the test's thread paused for a while by
        // a busy machine (the reader and the writer share it).
        const LIMIT: Duration = Duration::from_millis(500);
        let (near, mut far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, LIMIT);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0; 64];
            while let Ok(n @ 1..) = far.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            got
        });
        let data: Vec<u8> = (0..=255).cycle().take(40 * 64).collect();
        w.write_all(&data)
            .await
            .expect("progress keeps the write alive");
        w.shutdown().await.expect("shutdown");
        drop(w);
        assert_eq!(reader.await.expect("reader"), data);
    }

    #[tokio::test]
    async fn reads_have_no_deadline() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut r = WriteDeadline::new(near, LIMIT);
        let read = tokio::spawn(async move {
            let mut buf = [0; 4];
            r.read_exact(&mut buf).await.map(|_| buf)
        });
        tokio::time::sleep(LIMIT * 3).await;
        far.write_all(b"late").await.expect("write");
        let got = tokio::time::timeout(PATIENCE, read).await;
        assert_eq!(
            got.expect("read finished").expect("task").expect("read"),
            *b"late"
        );
    }
}
