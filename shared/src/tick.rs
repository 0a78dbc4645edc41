//! The simulation tick counter.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A simulation tick number.
///
/// Ticks wrap around at `u32::MAX` (at 128 Hz that is after about a year of
/// uptime), so they are compared by their wrapping distance: `a < b` when `b`
/// is less than half the number space ahead of `a`. Two ticks exactly half the
/// ring apart are unordered (`partial_cmp` is `None`). This is why `Tick` is
/// `PartialOrd` but deliberately not `Ord`: the order is not transitive across
/// the whole ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tick(pub u32);

impl Tick {
    /// The tick after this one.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// This tick moved `n` ticks forward (wrapping).
    #[must_use]
    pub fn advanced(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// Signed number of ticks from `earlier` to `self`. Positive when `self` is
    /// after `earlier`.
    #[must_use]
    pub fn since(self, earlier: Tick) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }
}

impl PartialOrd for Tick {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.since(*other) {
            i32::MIN => None,
            d => Some(d.cmp(&0)),
        }
    }
}

impl std::fmt::Display for Tick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_survives_wraparound() {
        let before = Tick(u32::MAX - 1);
        let after = before.advanced(3);
        assert_eq!(after, Tick(1));
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after.since(before), 3);
        assert_eq!(before.since(after), -3);
    }

    #[test]
    fn next_wraps_to_zero() {
        assert_eq!(Tick(u32::MAX).next(), Tick(0));
        assert!(Tick(u32::MAX) < Tick(0));
    }

    #[test]
    fn ticks_half_the_ring_apart_are_unordered() {
        let (a, b) = (Tick(0), Tick(1 << 31));
        assert_eq!(a.partial_cmp(&b), None);
        assert_eq!(b.partial_cmp(&a), None);
        assert!(Tick(1) < b, "one closer is ordered again");
    }

    #[test]
    fn equal_ticks_compare_equal() {
        assert_eq!(Tick(7).partial_cmp(&Tick(7)), Some(Ordering::Equal));
    }
}
