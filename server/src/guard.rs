//! Admission and abuse guards: the origin allowlist, the operator token,
//! per-IP connection limits, and per-connection message rate limiting.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Which web origins may open a WebSocket, so another site cannot hijack a
/// player's browser session (cross-site WebSocket hijacking).
///
/// Requests without an `Origin` header are not from a browser page and are
/// always allowed: the header protects browsers, and any other client can
/// forge it anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// The page's own host (the request's `Host`), `localhost`, `127.0.0.1`
    /// and `[::1]` on any port, plus these origins (`scheme://host[:port]`,
    /// compared case-insensitively). The default, with an empty list.
    #[default]
    SameHost,
    /// Like [`OriginPolicy::SameHost`] plus the listed origins.
    SameHostAnd(Vec<String>),
    /// Every origin. Must be asked for explicitly (`--allowed-origins '*'`).
    Any,
}

impl OriginPolicy {
    /// Parses the `--allowed-origins` value: `*`, or a comma-separated list
    /// (empty means the default).
    #[must_use]
    pub fn parse(value: &str) -> Self {
        let list: Vec<String> = value
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if list.iter().any(|s| s == "*") {
            Self::Any
        } else if list.is_empty() {
            Self::SameHost
        } else {
            Self::SameHostAnd(list)
        }
    }

    /// Whether a request with this `Origin` and `Host` may upgrade.
    #[must_use]
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if *self == Self::Any {
            return true;
        }
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let Some((_, authority)) = origin.split_once("://") else {
            return false; // "null" and other opaque origins
        };
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        let hostname = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if matches!(hostname, "localhost" | "127.0.0.1" | "::1") {
            return true;
        }
        match self {
            Self::SameHostAnd(list) => list.contains(&origin),
            Self::SameHost | Self::Any => false,
        }
    }
}

/// What one customer of the network is: an IPv4 address, or an IPv6 /64
/// network (see [`PerIpLimiter`]). IPv4-mapped IPv6 addresses (the IPv4
/// peers of a dual-stack socket) are their IPv4 address.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Counts connections per peer address: per IPv4 address, and per IPv6
/// /64 network.
///
/// An ISP or a cloud provider hands each customer a whole IPv6 /64 (2^64
/// addresses), so counting single IPv6 addresses would let one customer
/// rotate through as many "peers" as it likes and take every seat and
/// connection slot; a /64 is what one customer costs.
#[derive(Debug)]
pub(crate) struct PerIpLimiter {
    /// A std mutex: it is held for a hash-map update, never across `.await`.
    counts: Mutex<HashMap<IpAddr, u32>>,
    max: u32,
    exempt_loopback: bool,
}

/// Holds one of an IP's connection slots; gives it back on drop.
#[derive(Debug)]
pub(crate) struct IpPermit {
    limiter: Arc<PerIpLimiter>,
    ip: Option<IpAddr>,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut counts = crate::lock(&self.limiter.counts);
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

impl PerIpLimiter {
    /// `max == 0` means unlimited. Loopback peers are exempt when asked:
    /// behind a reverse proxy on the same host every player is loopback.
    pub(crate) fn new(max: u32, exempt_loopback: bool) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            max,
            exempt_loopback,
        })
    }

    /// A slot for `ip`, or `None` when its address (IPv6: its /64) already
    /// has `max` connections.
    ///
    /// An IPv4 peer of a dual-stack socket (`--addr [::]:PORT`) arrives as
    /// an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`), which
    /// `IpAddr::is_loopback` does not call loopback: it is counted, and
    /// exempted, as the IPv4 address it is.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpPermit> {
        let ip = ip.to_canonical();
        if self.max == 0 || (self.exempt_loopback && ip.is_loopback()) {
            return Some(IpPermit {
                limiter: Arc::clone(self),
                ip: None,
            });
        }
        let ip = address_key(ip);
        let mut counts = crate::lock(&self.counts);
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpPermit {
            limiter: Arc::clone(self),
            ip: Some(ip),
        })
    }
}

/// What to do with one incoming message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Within the rate.
    Pass,
    /// Over the rate: drop it and count it.
    Drop,
    /// Over the rate for too long: disconnect.
    Kick,
}

/// Token bucket per connection, plus the rule for "sustained" abuse: a
/// client that has messages dropped in `kick_after` consecutive one-second
/// windows is disconnected.
#[derive(Debug)]
pub(crate) struct RateGuard {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
    window_start: Instant,
    window_drops: u32,
    abusive_windows: u32,
    kick_after: u32,
}

impl RateGuard {
    /// A bucket refilled at `rate` messages per second holding at most
    /// `burst`.
    pub(crate) fn new(rate: f64, burst: f64, kick_after: u32, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
            rate,
            burst,
            window_start: now,
            window_drops: 0,
            abusive_windows: 0,
            kick_after,
        }
    }

    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.abusive_windows = if self.window_drops > 0 {
                self.abusive_windows + 1
            } else {
                0
            };
            self.window_start = now;
            self.window_drops = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admit::Pass;
        }
        self.window_drops += 1;
        if self.abusive_windows >= self.kick_after {
            Admit::Kick
        } else {
            Admit::Drop
        }
    }

    /// How long after the last [`Self::admit`] the bucket holds a whole
    /// token again: what a connection over its rate waits before it reads
    /// another frame.
    pub(crate) fn refill_wait(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.rate.max(f64::MIN_POSITIVE))
    }
}

/// The secret an operator presents (`Authorization: Bearer TOKEN`) to read
/// `/status.json` and `/metrics` and to see private rooms by name
/// (`--operator-token`).
///
/// Only its SHA-256 is kept, and a presented token is hashed and compared
/// with that: how long the comparison takes says nothing about the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorToken([u8; 32]);

impl OperatorToken {
    /// The token `secret`, without spaces or line ends around it (as a
    /// secret file or an environment file often has); `None` if that leaves
    /// nothing, or anything but visible ASCII, which an `Authorization`
    /// header cannot carry as it is (a browser refuses to send it).
    #[must_use]
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim_ascii();
        let usable = !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| Self(Sha256::digest(secret.as_bytes()).into()))
    }

    /// Whether an `Authorization` header value presents this token
    /// (`Bearer TOKEN`, the scheme's case ignored).
    #[must_use]
    pub fn admits(&self, authorization: &[u8]) -> bool {
        let Some((scheme, token)) = authorization.split_first_chunk::<7>() else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ")
            && <[u8; 32]>::from(Sha256::digest(token.trim_ascii())) == self.0
    }
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn the_operator_token_admits_only_its_bearer() {
        let token = OperatorToken::new("s3cret-operator").expect("non-empty");
        assert!(token.admits(b"Bearer s3cret-operator"));
        assert!(token.admits(b"bearer s3cret-operator "));
        for wrong in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer s3cret-operato",
            b"Bearer s3cret-operatorX",
            b"Basic s3cret-operator",
            b"s3cret-operator",
        ] {
            assert!(!token.admits(wrong), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(OperatorToken::new("").is_none());
        // Whitespace around it, as a secret file's last line end, is not
        // part of it; within it, or past ASCII, it cannot be sent.
        let file = OperatorToken::new(" s3cret-operator\n").expect("trimmed");
        assert!(file.admits(b"Bearer s3cret-operator"));
        for unusable in ["  \n", "two words", "caf\u{e9}"] {
            assert!(OperatorToken::new(unusable).is_none(), "{unusable:?}");
        }
        assert_eq!(format!("{token:?}"), "OperatorToken(..)");
    }

    #[test]
    fn origin_policy() {
        let default = OriginPolicy::parse("");
        assert!(default.allows(None, Some("game.example:8080")));
        assert!(default.allows(Some("https://game.example:8080"), Some("game.example:8080")));
        assert!(default.allows(Some("http://localhost:3000"), Some("game.example")));
        assert!(default.allows(Some("http://127.0.0.1:9"), Some("game.example")));
        assert!(default.allows(Some("http://[::1]:9"), Some("game.example")));
        assert!(!default.allows(Some("https://evil.example"), Some("game.example")));
        assert!(!default.allows(Some("null"), Some("game.example")));
        assert!(!default.allows(Some("https://localhost.evil.example"), Some("game.example")));

        let listed = OriginPolicy::parse("https://Play.Example.com/, https://cdn.example");
        assert!(listed.allows(Some("https://play.example.com"), Some("api.example")));
        assert!(!listed.allows(Some("https://other.example"), Some("api.example")));

        assert_eq!(OriginPolicy::parse("*"), OriginPolicy::Any);
        assert!(OriginPolicy::Any.allows(Some("https://anything"), None));
    }

    #[test]
    fn per_ip_limit_counts_and_releases() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let limiter = PerIpLimiter::new(2, true);
        let a = limiter.try_acquire(ip);
        let b = limiter.try_acquire(ip);
        assert!(a.is_some() && b.is_some());
        assert!(limiter.try_acquire(ip).is_none());
        drop(a);
        assert!(limiter.try_acquire(ip).is_some());
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!((0..10).all(|_| limiter.try_acquire(loopback).is_some()));
        let strict = PerIpLimiter::new(1, false);
        let _held = strict.try_acquire(loopback);
        assert!(strict.try_acquire(loopback).is_none());
    }

    /// IPv6 peers are counted per /64: rotating through the addresses of
    /// one network gains nothing, while another network has its own count.
    #[test]
    fn ipv6_peers_are_counted_per_64_network() {
        let limiter = PerIpLimiter::new(2, true);
        let host = |net: u16, low: u64| {
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(0x2001_0db8_0000_0000_u64 | u64::from(net)) << 64) | u128::from(low),
            ))
        };
        let _a = limiter.try_acquire(host(1, 1));
        let _b = limiter.try_acquire(host(1, 0xdead_beef));
        assert!(limiter.try_acquire(host(1, u64::MAX)).is_none());
        assert!(limiter.try_acquire(host(2, 1)).is_some());
        // The IPv6 loopback is exempt like 127.0.0.1.
        assert!((0..4).all(|_| {
            limiter
                .try_acquire(IpAddr::V6(Ipv6Addr::LOCALHOST))
                .is_some()
        }));
    }

    /// Behind a reverse proxy on the same host, a server bound to `[::]`
    /// sees its IPv4 peers as IPv4-mapped IPv6 addresses.
    #[test]
    fn ipv4_peers_of_a_dual_stack_socket_count_as_ipv4() {
        let mapped_loopback = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let limiter = PerIpLimiter::new(1, true);
        assert!((0..10).all(|_| limiter.try_acquire(mapped_loopback).is_some()));
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let _held = limiter.try_acquire(IpAddr::V6(ip.to_ipv6_mapped()));
        assert!(
            limiter.try_acquire(IpAddr::V4(ip)).is_none(),
            "one peer, one count, however it arrives"
        );
    }

    #[test]
    fn rate_guard_drops_bursts_then_kicks_sustained_abuse() {
        let start = Instant::now();
        let mut g = RateGuard::new(10.0, 5.0, 3, start);
        let verdicts: Vec<_> = (0..8).map(|_| g.admit(start)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Admit::Pass).count(), 5);
        assert_eq!(verdicts[7], Admit::Drop);
        // A polite client refills and passes.
        assert_eq!(g.admit(start + Duration::from_millis(150)), Admit::Pass);
        // Flooding through three more windows gets a kick.
        let mut last = Admit::Pass;
        for ms in (200..4000).step_by(10) {
            last = g.admit(start + Duration::from_millis(ms));
            if last == Admit::Kick {
                break;
            }
        }
        assert_eq!(last, Admit::Kick);
    }
}
