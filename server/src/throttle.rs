//! A log line that an outsider can trigger at will (a room refused at the
//! room limit, every connection slot taken), said at most once per period
//! with how many times it happened since.

use std::time::{Duration, Instant};

/// One warning's schedule: due at the first occurrence, then at most once
/// per `period`, carrying the occurrences since the last line.
#[derive(Debug)]
pub(crate) struct LogEvery {
    period: Duration,
    /// When the line was last due, and the occurrences since.
    last: Option<(Instant, u64)>,
}

impl LogEvery {
    pub(crate) const fn new(period: Duration) -> Self {
        Self { period, last: None }
    }

    /// Counts one occurrence at `now`: `Some(occurrences)` (this one and
    /// those not logged since the last line) when the line is due.
    pub(crate) fn due(&mut self, now: Instant) -> Option<u64> {
        match &mut self.last {
            Some((at, since)) if now.duration_since(*at) < self.period => {
                *since += 1;
                None
            }
            last => {
                let occurrences = last.map_or(1, |(_, n)| n + 1);
                *last = Some((now, 0));
                Some(occurrences)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asked as fast as it can be, a line is due once per period, with the
    /// count of what it did not say.
    #[test]
    fn due_once_per_period_with_the_count() {
        let mut log = LogEvery::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.due(start), Some(1), "the first occurrence");
        for i in 1..=100 {
            assert_eq!(log.due(start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.last.map(|(_, n)| n), Some(100));
        // Ten seconds on, the next occurrence is logged with the count.
        assert_eq!(log.due(start + Duration::from_secs(10)), Some(101));
        assert_eq!(log.last.map(|(_, n)| n), Some(0));
    }
}
