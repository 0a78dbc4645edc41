//! Input pacing: keeps the server's buffer of this bot's inputs from holding
//! a permanent extra tick of latency.
//!
//! The server applies at most one input per player per tick and buffers the
//! rest. Whenever an input arrives late (a hiccup of the sender or the
//! network) the server idles that player for a tick; from then on every
//! input waits one tick longer in the buffer, because one input per tick in
//! and one per tick out never drains it. Each hiccup can add a tick for the
//! rest of the session. Real clients correct this by adjusting their input
//! clock (Overwatch and Rocket League slow down or speed up the client's
//! simulation); a bot can do the simplest version: skip one input.
//!
//! Detection: `latency - ping round trip` is the time an input waited on the
//! server. If, over a whole window of acknowledgements, not a single input
//! waited less than a tick, every input sat behind another one in the buffer,
//! so the bot skips its next input. The round trip is the lowest ping seen,
//! which only makes the wait estimate larger for jittered samples; the
//! minimum over the window picks the sample with the least jitter. Each skip
//! is counted in the report (`inputs_paced`): a server that keeps needing
//! them has a buffering problem worth knowing about.
//!
//! Pure: durations arrive as arguments.

use std::time::Duration;

/// Decides when a bot skips an input.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    /// Acknowledgements per judgement (one second's worth).
    window: u32,
    /// Lowest ping round trip seen; no pacing until one is known.
    rtt_floor: Option<Duration>,
    /// Shortest server-side wait in the current window.
    min_wait: Option<Duration>,
    samples: u32,
    skip_next: bool,
}

impl Pacer {
    /// A pacer for a server ticking at `tick_hz`.
    #[must_use]
    pub fn new(tick_hz: u32) -> Self {
        let hz = tick_hz.max(1);
        Self {
            period: Duration::from_secs_f64(1.0 / f64::from(hz)),
            window: hz,
            rtt_floor: None,
            min_wait: None,
            samples: 0,
            skip_next: false,
        }
    }

    /// A ping round trip was measured.
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt_floor = Some(self.rtt_floor.map_or(rtt, |r| r.min(rtt)));
    }

    /// An input was acknowledged `latency` after it was sent.
    pub fn on_ack_latency(&mut self, latency: Duration) {
        let Some(rtt) = self.rtt_floor else {
            return;
        };
        let wait = latency.saturating_sub(rtt);
        self.min_wait = Some(self.min_wait.map_or(wait, |w| w.min(wait)));
        self.samples += 1;
        if self.samples >= self.window {
            // A tenth of a tick of slack for the server's own processing.
            if self
                .min_wait
                .is_some_and(|w| w > self.period + self.period / 10)
            {
                self.skip_next = true;
            }
            self.min_wait = None;
            self.samples = 0;
        }
    }

    /// Whether the input of this tick should be skipped; at most one skip
    /// per judgement.
    pub fn take_skip(&mut self) -> bool {
        std::mem::take(&mut self.skip_next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_skip_without_a_round_trip_measure() {
        let mut p = Pacer::new(30);
        for _ in 0..300 {
            p.on_ack_latency(ms(200));
        }
        assert!(!p.take_skip());
    }

    #[test]
    fn inputs_that_never_wait_under_a_tick_trigger_one_skip_per_window() {
        let mut p = Pacer::new(30);
        p.on_rtt(ms(2));
        // Queue of one: every input waits a tick plus its phase (here 5 to
        // 33 ms).
        for i in 0..29 {
            p.on_ack_latency(ms(2 + 33 + 5 + i));
            assert!(!p.take_skip(), "judged before the window was full");
        }
        p.on_ack_latency(ms(2 + 40));
        assert!(p.take_skip());
        assert!(!p.take_skip(), "one skip per judgement");
    }

    #[test]
    fn one_short_wait_in_the_window_means_no_queue() {
        let mut p = Pacer::new(30);
        p.on_rtt(ms(2));
        for i in 0..30 {
            // Phase spread over the tick: some inputs are applied quickly.
            p.on_ack_latency(ms(2 + (i * 33 / 30)));
        }
        assert!(!p.take_skip());
    }

    #[test]
    fn the_lowest_round_trip_is_used() {
        let mut p = Pacer::new(30);
        p.on_rtt(ms(90));
        p.on_rtt(ms(60));
        p.on_rtt(ms(100));
        // 60 ms of round trip + 20 ms of wait: no queue.
        for _ in 0..30 {
            p.on_ack_latency(ms(80));
        }
        assert!(!p.take_skip());
        // 60 ms + 40 ms: queued.
        for _ in 0..30 {
            p.on_ack_latency(ms(100));
        }
        assert!(p.take_skip());
    }
}
