//! A link conditioner: delays what a bot sends and receives by a latency plus
//! or minus a uniform jitter, so the netcode is exercised under realistic
//! conditions on loopback.
//!
//! The model is TCP's, because the transport is a WebSocket: nothing is lost
//! and nothing is reordered. A message is released at
//! `max(arrival + latency ± jitter, release time of the previous message)`, so
//! jitter shows up as bunching (a late message holds back the ones behind it),
//! never as reordering.
//!
//! [`LinkConditioner`] is pure: it takes the current time as an argument and
//! returns the release time, so it is tested without a clock. [`DelayedRx`]
//! is the small async piece that waits for release times on the receiving end
//! of a bounded channel.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many messages one direction of one bot's link may hold in flight.
///
/// Full-queue policy: the inbound direction makes the socket reader wait, so
/// TCP backpressure reaches the server exactly as it would from a slow real
/// client (the server's own slow-client policy then applies). The outbound
/// direction treats a full queue as a broken link and ends the bot with
/// [`crate::bot::BotError::SendQueueFull`]: at the tick rate a healthy link
/// holds a handful of messages, so 256 means the server stopped reading.
///
/// Default: 256 messages (several seconds of inputs and acks at 30 Hz).
pub const LINK_QUEUE: usize = 256;

/// The most messages a bot's link carries a second in one direction, with
/// room to spare: an input or an ack per tick and a ping going out, a
/// snapshot per tick and a pong coming in, at tick rates up to 60 Hz.
pub const MESSAGES_PER_SECOND: usize = 128;

/// Latency and jitter of one direction of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkConfig {
    /// Mean one-way delay. Default: 0 (no conditioning).
    pub latency: Duration,
    /// Maximum deviation from `latency`, drawn uniformly from
    /// `-jitter..=jitter` per message; a negative total is clamped to zero.
    /// Default: 0.
    pub jitter: Duration,
}

impl LinkConfig {
    /// Whether this link adds no delay at all.
    #[must_use]
    pub fn is_transparent(&self) -> bool {
        self.latency.is_zero() && self.jitter.is_zero()
    }

    /// Largest one-way delay this link can add.
    #[must_use]
    pub fn max_delay(&self) -> Duration {
        self.latency + self.jitter
    }

    /// How many messages each direction of a link with this delay may hold:
    /// [`LINK_QUEUE`] for a healthy link, plus what the delay itself holds
    /// back (at most [`MESSAGES_PER_SECOND`] a second), so that a long
    /// delay is not mistaken for a server that stopped reading.
    #[must_use]
    pub fn queue_len(&self) -> usize {
        let delayed = self.max_delay().as_millis() * MESSAGES_PER_SECOND as u128 / 1000;
        LINK_QUEUE.saturating_add(usize::try_from(delayed).unwrap_or(usize::MAX))
    }
}

/// The delay model of one direction of one bot's link.
#[derive(Debug)]
pub struct LinkConditioner {
    config: LinkConfig,
    /// Per-link generator, seeded from the swarm seed and the bot index, so a
    /// run is reproducible and two bots do not share a jitter sequence.
    rng: fastrand::Rng,
    /// Release time of the previous message: the floor for the next one,
    /// which is what keeps the order.
    last_release: Option<Instant>,
}

impl LinkConditioner {
    /// A conditioner for `config`, drawing its jitter from `seed`.
    #[must_use]
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: fastrand::Rng::with_seed(seed),
            last_release: None,
        }
    }

    /// When a message that enters the link at `now` comes out of it.
    /// Never earlier than `now`, never earlier than the previous message.
    pub fn release_at(&mut self, now: Instant) -> Instant {
        if self.config.is_transparent() {
            return now;
        }
        let latency = self.config.latency.as_micros() as i64;
        let jitter = self.config.jitter.as_micros() as i64;
        let offset = if jitter == 0 {
            0
        } else {
            self.rng.i64(-jitter..=jitter)
        };
        let delay = Duration::from_micros((latency + offset).max(0) as u64);
        let release = match self.last_release {
            Some(prev) if prev > now + delay => prev,
            _ => now + delay,
        };
        self.last_release = Some(release);
        release
    }
}

/// A message held by the link until its release time.
#[derive(Debug)]
pub struct Delayed<T> {
    /// When the message may come out of the link.
    pub release: Instant,
    /// The message.
    pub item: T,
}

/// The receiving end of one conditioned direction: yields each message of a
/// bounded channel no earlier than its release time.
///
/// Release times on one channel never decrease (see
/// [`LinkConditioner::release_at`]), so holding back the head of the channel
/// holds back nothing that is due earlier.
#[derive(Debug)]
pub struct DelayedRx<T> {
    rx: mpsc::Receiver<Delayed<T>>,
    /// The head of the channel while it waits for its release time; kept here
    /// so that [`DelayedRx::recv`] is cancel-safe inside `select!`.
    held: Option<Delayed<T>>,
}

impl<T> DelayedRx<T> {
    /// Wraps the receiving end of a link channel.
    #[must_use]
    pub fn new(rx: mpsc::Receiver<Delayed<T>>) -> Self {
        Self { rx, held: None }
    }

    /// The next message once it is released, with its release time; `None`
    /// when every sender is gone and nothing is left.
    ///
    /// Cancel-safe: a message that was taken from the channel but not yet
    /// released stays held for the next call.
    pub async fn recv(&mut self) -> Option<Delayed<T>> {
        if self.held.is_none() {
            self.held = Some(self.rx.recv().await?);
        }
        if let Some(held) = &self.held
            && held.release > Instant::now()
        {
            // Only when the message is really due later: a sleep until a
            // time already past still goes through the timer wheel and
            // reschedules the task, which on a transparent link would be
            // paid for every message of every bot.
            tokio::time::sleep_until(held.release).await;
        }
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn transparent_link_releases_immediately() {
        let mut link = LinkConditioner::new(LinkConfig::default(), 1);
        let now = Instant::now();
        assert_eq!(link.release_at(now), now);
        assert_eq!(link.release_at(now + ms(5)), now + ms(5));
    }

    #[test]
    fn fixed_latency_shifts_every_message() {
        let config = LinkConfig {
            latency: ms(40),
            jitter: Duration::ZERO,
        };
        let mut link = LinkConditioner::new(config, 1);
        let t0 = Instant::now();
        for i in 0..10 {
            let sent = t0 + ms(33 * i);
            assert_eq!(link.release_at(sent), sent + ms(40));
        }
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let config = LinkConfig {
            latency: ms(40),
            jitter: ms(10),
        };
        let mut link = LinkConditioner::new(config, 7);
        let t0 = Instant::now();
        let mut prev = t0;
        let mut delays = Vec::new();
        for i in 0..2000 {
            // Messages 1 ms apart: jitter of ±10 ms would reorder them
            // without the ordering floor.
            let sent = t0 + ms(i);
            let release = link.release_at(sent);
            assert!(release >= prev, "message {i} overtook its predecessor");
            assert!(release >= sent + ms(30), "message {i} early");
            // The floor may hold a message back by at most the jitter span.
            assert!(release <= sent + ms(50) + ms(20), "message {i} too late");
            prev = release;
            delays.push(release - sent);
        }
        // The jitter is real: delays are not all the same.
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(max - min >= ms(10), "min {min:?} max {max:?}");
    }

    #[test]
    fn sparse_messages_see_the_full_jitter_range() {
        let config = LinkConfig {
            latency: ms(40),
            jitter: ms(10),
        };
        let mut link = LinkConditioner::new(config, 3);
        let t0 = Instant::now();
        let (mut below, mut above) = (0, 0);
        for i in 0..1000 {
            // 100 ms apart: the ordering floor never binds.
            let sent = t0 + ms(100 * i);
            let delay = link.release_at(sent) - sent;
            assert!((ms(30)..=ms(50)).contains(&delay), "{delay:?}");
            if delay < ms(35) {
                below += 1;
            }
            if delay > ms(45) {
                above += 1;
            }
        }
        // Uniform: about a quarter of the draws in each outer band.
        assert!(below > 150 && above > 150, "below {below} above {above}");
    }

    #[test]
    fn jitter_larger_than_latency_clamps_at_zero() {
        let config = LinkConfig {
            latency: ms(2),
            jitter: ms(20),
        };
        let mut link = LinkConditioner::new(config, 9);
        let t0 = Instant::now();
        for i in 0..500 {
            let sent = t0 + ms(1000 * i);
            assert!(link.release_at(sent) >= sent);
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let config = LinkConfig {
            latency: ms(40),
            jitter: ms(10),
        };
        let t0 = Instant::now();
        let run = |seed| {
            let mut link = LinkConditioner::new(config, seed);
            (0..50)
                .map(|i| link.release_at(t0 + ms(100 * i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn a_long_delay_gets_a_queue_that_holds_it() {
        assert_eq!(LinkConfig::default().queue_len(), LINK_QUEUE);
        // Ten seconds each way at 30 Hz: 300 inputs in flight at once.
        let slow = LinkConfig {
            latency: Duration::from_secs(9),
            jitter: Duration::from_secs(1),
        };
        assert!(slow.queue_len() >= LINK_QUEUE + 300);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_rx_waits_for_release_and_keeps_order() {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let mut rx = DelayedRx::new(rx);
        let t0 = Instant::now();
        for (i, delay) in [30u64, 30, 45, 50].into_iter().enumerate() {
            let sent = tx
                .send(Delayed {
                    release: t0 + ms(delay),
                    item: i,
                })
                .await;
            assert!(sent.is_ok());
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(d) = rx.recv().await {
            assert!(Instant::now() >= d.release);
            got.push((d.item, Instant::now() - t0));
        }
        assert_eq!(
            got,
            vec![(0, ms(30)), (1, ms(30)), (2, ms(45)), (3, ms(50))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_rx_is_cancel_safe() {
        let (tx, rx) = mpsc::channel(4);
        let mut rx = DelayedRx::new(rx);
        let t0 = Instant::now();
        let sent = tx
            .send(Delayed {
                release: t0 + ms(100),
                item: 'a',
            })
            .await;
        assert!(sent.is_ok());
        // Cancelled halfway through the wait: the message must not be lost.
        let early = tokio::time::timeout(ms(50), rx.recv()).await;
        assert!(early.is_err());
        let late = rx.recv().await.map(|d| d.item);
        assert_eq!(late, Some('a'));
        assert_eq!(Instant::now() - t0, ms(100));
    }
}
