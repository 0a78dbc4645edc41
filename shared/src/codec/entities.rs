//! The entity section of a snapshot (protocol 5): created entities, change
//! heads and their values, bit-packed (`PROTOCOL.md` 5.3).
//!
//! Byte-aligned varints spend a whole byte on a 3-bit angle change and three
//! on a 14-bit position. Here every number is an exponential-Golomb code of
//! order `k`, chosen per field from the values that field carries: small
//! values cost `k + 1` bits, and each doubling of the range one bit more
//! on either side of the value. Any `u32` and any `i32` can be coded, so
//! every [`SnapshotMsg`] round-trips, however unlikely its numbers; each
//! value has exactly one code, so re-encoding a decoded message gives the
//! same bytes.
//!
//! Bits are packed most significant first: stream bit `i` is bit
//! `7 - i % 8` of byte `i / 8`, and a field of width `w` occupies the next
//! `w` stream bits from its most significant bit down, so a code is one
//! shift and one OR. The last byte is padded with zero bits.

use crate::rules::MAX_HP;
use crate::snapshot::{EntityCreate, EntityKind, SnapshotMsg, fields};

/// Code orders (`k`) per field. The bandwidth bin (`benches/src/bin/bandwidth.rs`)
/// measured them on the realistic worlds (`BENCHMARKS.md` section 5).
mod order {
    /// The three counts: created entities, change heads, values.
    pub(super) const COUNT: u32 = 4;
    /// A created entity's id gap.
    pub(super) const CREATE_GAP: u32 = 2;
    /// A created entity's `x` and `y`, as `u32` (the arena is 0..=9600).
    pub(super) const CREATE_POS: u32 = 12;
    /// A created entity's `vx` and `vy`, zigzag (a shot moves up to 96 a tick).
    pub(super) const CREATE_VEL: u32 = 6;
    /// A change head's id gap.
    pub(super) const HEAD_GAP: u32 = 0;
    /// `POS` residuals, zigzag.
    pub(super) const POS: u32 = 2;
    /// `VEL` changes, zigzag.
    pub(super) const VEL: u32 = 4;
    /// The turn age `k`, as `(k - 1) as u32`.
    pub(super) const TURN: u32 = 2;
    /// `ANGLE` changes, zigzag.
    pub(super) const ANGLE: u32 = 2;
    /// `HP` changes, zigzag.
    pub(super) const HP: u32 = 5;
    /// Values beyond what the heads ask for (never sent by the server; an
    /// inconsistent message still round-trips, and [`crate::snapshot::apply`]
    /// refuses it).
    pub(super) const SURPLUS: u32 = 2;
}

/// The fewest bits a created entity can take: gap, kind, two positions,
/// two velocities, angle, hp flag.
const MIN_CREATE_BITS: u64 = (order::CREATE_GAP + 1) as u64
    + 2
    + 2 * (order::CREATE_POS + 1) as u64
    + 2 * (order::CREATE_VEL + 1) as u64
    + 8
    + 1;
/// The fewest bits a change head can take: mask and gap.
const MIN_HEAD_BITS: u64 = 4 + (order::HEAD_GAP + 1) as u64;
/// The fewest bits a value can take.
const MIN_VALUE_BITS: u64 = 3;

/// What decoded lists are charged against the decode budget, in bytes:
/// their in-memory width, as bincode charges the rest of the message.
const CREATE_CHARGE: usize = 26;
const HEAD_CHARGE: usize = 4;
const VALUE_CHARGE: usize = 4;

/// Why an entity section does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SectionError {
    /// The decoded lists would exceed the decode budget.
    TooLarge,
    /// Truncated, an overlong code, a kind out of range, or nonzero padding.
    Malformed(&'static str),
}

/// bincode's signed integer mapping: 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
#[inline(always)]
fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline(always)]
fn unzigzag(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

/// The hit points a created entity of `kind` has unless the message says
/// otherwise: what a new entity of that kind spawns with.
#[inline(always)]
fn default_hp(kind: EntityKind) -> u8 {
    match kind {
        EntityKind::Player | EntityKind::Npc => MAX_HP,
        EntityKind::Projectile => 1,
    }
}

/// Appends bits to a byte vector, 32 at a time.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Pending bits in the low `fill` bits, the oldest highest (bits above
    /// them are stale). Fewer than 32 between calls.
    acc: u64,
    fill: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            fill: 0,
        }
    }

    /// Writes the low `width` bits of `v` (`width` ≤ 32, higher bits zero),
    /// most significant first.
    #[inline(always)]
    fn put(&mut self, v: u64, width: u32) {
        debug_assert!(width <= 32 && v >> width == 0);
        self.acc = (self.acc << width) | v;
        self.fill += width;
        if self.fill >= 32 {
            self.fill -= 32;
            let word = (self.acc >> self.fill) as u32;
            self.out.extend_from_slice(&word.to_be_bytes());
        }
    }

    /// Exponential-Golomb code of order `k` (≤ 16): `x = u + 2^k`, of `n`
    /// bits, written in `2n - k - 1` bits, so after `n - k - 1` zeros.
    #[inline(always)]
    fn golomb(&mut self, u: u32, k: u32) {
        let x = u64::from(u) + (1 << k);
        let n = 64 - x.leading_zeros();
        let width = 2 * n - k - 1;
        if width <= 32 {
            self.put(x, width);
        } else {
            self.golomb_wide(x, n, k);
        }
    }

    /// A code longer than 32 bits (a number of 17 bits or more). Inlined:
    /// a call taking `&mut self` would keep `acc` and `fill` in memory.
    #[inline(always)]
    fn golomb_wide(&mut self, x: u64, n: u32, k: u32) {
        self.put(0, n - k - 1);
        self.put(x >> 16, n - 16);
        self.put(x & 0xFFFF, 16);
    }

    #[inline(always)]
    fn signed(&mut self, v: i32, k: u32) {
        self.golomb(zigzag(v), k);
    }

    /// Writes the last partial byte, its unused low bits zero.
    fn finish(self) {
        if self.fill > 0 {
            let top = self.acc << (64 - self.fill);
            let bytes = self.fill.div_ceil(8) as usize;
            self.out.extend_from_slice(&top.to_be_bytes()[..bytes]);
        }
    }
}

/// Reads bits from a byte slice.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    at: usize,
}

const TRUNCATED: SectionError = SectionError::Malformed("entity section truncated");

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn left(&self) -> usize {
        self.bytes.len() * 8 - self.at
    }

    /// The next 57 or more bits, the oldest highest; zeros past the end.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let byte = self.at / 8;
        let mut word = [0u8; 8];
        if let Some(b) = self.bytes.get(byte..byte + 8) {
            word.copy_from_slice(b);
        } else {
            let rest = &self.bytes[byte.min(self.bytes.len())..];
            word[..rest.len()].copy_from_slice(rest);
        }
        u64::from_be_bytes(word) << (self.at % 8)
    }

    /// Reads `width` (≤ 32) bits.
    #[inline(always)]
    fn bits(&mut self, width: u32) -> Result<u32, SectionError> {
        if self.left() < width as usize {
            return Err(TRUNCATED);
        }
        let v = if width == 0 {
            0
        } else {
            self.peek() >> (64 - width)
        };
        self.at += width as usize;
        Ok(v as u32)
    }

    /// Reads an exponential-Golomb code of order `k` (see
    /// [`BitWriter::golomb`]). A code for a number above `u32::MAX` is
    /// malformed.
    #[inline(always)]
    fn golomb(&mut self, k: u32) -> Result<u32, SectionError> {
        let window = self.peek();
        let zeros = window.leading_zeros();
        let left = self.left();
        // `x` has at most 33 bits, so at most 32 - k zeros.
        if zeros > 32 - k {
            return Err(if left <= zeros as usize {
                TRUNCATED
            } else {
                SectionError::Malformed("entity section: overlong number")
            });
        }
        let width = 2 * zeros + k + 1;
        if left < width as usize {
            return Err(TRUNCATED);
        }
        let x = if width <= 57 {
            self.at += width as usize;
            window >> (64 - width)
        } else {
            self.at += zeros as usize;
            let n = zeros + k + 1;
            let high = u64::from(self.bits(n - 16)?);
            (high << 16) | u64::from(self.bits(16)?)
        };
        u32::try_from(x - (1 << k))
            .map_err(|_| SectionError::Malformed("entity section: number above u32::MAX"))
    }

    #[inline(always)]
    fn signed(&mut self, k: u32) -> Result<i32, SectionError> {
        Ok(unzigzag(self.golomb(k)?))
    }

    /// Succeeds if only the zero padding of the last byte is left.
    fn finish(&self) -> Result<(), SectionError> {
        if self.left() >= 8 {
            return Err(SectionError::Malformed("entity section: trailing bytes"));
        }
        if self.peek() != 0 {
            return Err(SectionError::Malformed("entity section: nonzero padding"));
        }
        Ok(())
    }
}

/// The code order of each value, walking the heads: each head's set bits in
/// the order `POS`, `VEL`, `ANGLE`, `HP`, then [`order::SURPLUS`] for values
/// the heads do not ask for. The turn age comes as [`TURN_CODE`].
struct ValueOrders<'a> {
    heads: std::slice::Iter<'a, u32>,
    /// Orders of the current head's values not yet handed out, last first.
    pending: [u32; 7],
    len: usize,
    /// Whether a `VEL` group carries the turn age (`base_age` ≥ 2).
    turn: bool,
}

impl<'a> ValueOrders<'a> {
    fn new(heads: &'a [u32], base_age: u32) -> Self {
        Self {
            heads: heads.iter(),
            pending: [0; 7],
            len: 0,
            turn: base_age >= 2,
        }
    }

    #[inline(always)]
    fn next(&mut self) -> u32 {
        while self.len == 0 {
            let Some(&head) = self.heads.next() else {
                return order::SURPLUS;
            };
            // Pushed last value first.
            let mut p = [0; 7];
            let mut n = 0;
            if head & fields::HP != 0 {
                p[n] = order::HP;
                n += 1;
            }
            if head & fields::ANGLE != 0 {
                p[n] = order::ANGLE;
                n += 1;
            }
            if head & fields::VEL != 0 {
                if self.turn {
                    p[n] = TURN_CODE;
                    n += 1;
                }
                p[n] = order::VEL;
                p[n + 1] = order::VEL;
                n += 2;
            }
            if head & fields::POS != 0 {
                p[n] = order::POS;
                p[n + 1] = order::POS;
                n += 2;
            }
            self.pending = p;
            self.len = n;
        }
        self.len -= 1;
        self.pending[self.len]
    }
}

/// Marks the turn age among the codes [`ValueOrders`] hands out: coded
/// unsigned, as `(k - 1) as u32`, where every other value is zigzag.
const TURN_CODE: u32 = 0x100 | order::TURN;

/// Appends the entity section of `s` (without its length) to `out`.
pub(super) fn pack(s: &SnapshotMsg, out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    w.golomb(s.created.len() as u32, order::COUNT);
    for c in &s.created {
        w.golomb(c.gap, order::CREATE_GAP);
        w.put(u64::from(c.kind.index()), 2);
        w.golomb(c.x as u32, order::CREATE_POS);
        w.golomb(c.y as u32, order::CREATE_POS);
        w.signed(c.vx, order::CREATE_VEL);
        w.signed(c.vy, order::CREATE_VEL);
        w.put(u64::from(c.angle), 8);
        if c.hp == default_hp(c.kind) {
            w.put(1, 1);
        } else {
            // A zero flag bit, then the hit points.
            w.put(u64::from(c.hp), 9);
        }
    }
    w.golomb(s.changed.len() as u32, order::COUNT);
    for &head in &s.changed {
        w.put(u64::from(head & 0xF), 4);
        w.golomb(head >> 4, order::HEAD_GAP);
    }
    w.golomb(s.values.len() as u32, order::COUNT);
    pack_values(&mut w, &s.changed, &s.values, s.base_age >= 2);
    w.finish();
}

/// Writes `values` with the codes the heads give them (the encoder's
/// unrolled [`ValueOrders`]: no per-value dispatch).
#[inline(always)]
fn pack_values(w: &mut BitWriter<'_>, heads: &[u32], values: &[i32], turn: bool) {
    let mut vs = values.iter().copied();
    macro_rules! value {
        ($k:expr) => {
            match vs.next() {
                Some(v) => w.signed(v, $k),
                None => return,
            }
        };
    }
    for &head in heads {
        if head & fields::POS != 0 {
            value!(order::POS);
            value!(order::POS);
        }
        if head & fields::VEL != 0 {
            value!(order::VEL);
            value!(order::VEL);
            if turn {
                match vs.next() {
                    Some(v) => w.golomb(v.wrapping_sub(1) as u32, order::TURN),
                    None => return,
                }
            }
        }
        if head & fields::ANGLE != 0 {
            value!(order::ANGLE);
        }
        if head & fields::HP != 0 {
            value!(order::HP);
        }
    }
    for v in vs {
        w.signed(v, order::SURPLUS);
    }
}

/// Reads a count and charges `count * charge` against `budget`, refusing
/// counts the section's bits cannot hold before anything is allocated.
fn count(
    r: &mut BitReader<'_>,
    min_bits: u64,
    charge: usize,
    budget: &mut usize,
) -> Result<usize, SectionError> {
    let n = r.golomb(order::COUNT)? as usize;
    if n as u64 * min_bits > r.left() as u64 {
        return Err(TRUNCATED);
    }
    let cost = n.saturating_mul(charge);
    if cost > *budget {
        return Err(SectionError::TooLarge);
    }
    *budget -= cost;
    Ok(n)
}

/// Decodes an entity section into `s.created`, `s.changed` and `s.values`
/// (each replaced), with `s.base_age` already set. The lists are charged
/// against `budget` (bytes of in-memory width).
pub(super) fn unpack(
    bytes: &[u8],
    s: &mut SnapshotMsg,
    mut budget: usize,
) -> Result<(), SectionError> {
    let mut r = BitReader::new(bytes);
    let n = count(&mut r, MIN_CREATE_BITS, CREATE_CHARGE, &mut budget)?;
    s.created.clear();
    s.created.reserve(n);
    for _ in 0..n {
        let gap = r.golomb(order::CREATE_GAP)?;
        let kind = match r.bits(2)? {
            0 => EntityKind::Player,
            1 => EntityKind::Npc,
            2 => EntityKind::Projectile,
            _ => return Err(SectionError::Malformed("entity section: kind 3")),
        };
        let x = r.golomb(order::CREATE_POS)? as i32;
        let y = r.golomb(order::CREATE_POS)? as i32;
        let vx = r.signed(order::CREATE_VEL)?;
        let vy = r.signed(order::CREATE_VEL)?;
        let angle = r.bits(8)? as u8;
        let hp = if r.bits(1)? == 1 {
            default_hp(kind)
        } else {
            r.bits(8)? as u8
        };
        s.created.push(EntityCreate {
            gap,
            kind,
            x,
            y,
            vx,
            vy,
            angle,
            hp,
        });
    }
    let n = count(&mut r, MIN_HEAD_BITS, HEAD_CHARGE, &mut budget)?;
    s.changed.clear();
    s.changed.reserve(n);
    for _ in 0..n {
        let mask = r.bits(4)?;
        let gap = r.golomb(order::HEAD_GAP)?;
        if gap > u32::MAX >> 4 {
            return Err(SectionError::Malformed(
                "entity section: head gap above 2^28",
            ));
        }
        s.changed.push(gap << 4 | mask);
    }
    let n = count(&mut r, MIN_VALUE_BITS, VALUE_CHARGE, &mut budget)?;
    s.values.clear();
    s.values.reserve(n);
    let mut orders = ValueOrders::new(&s.changed, s.base_age);
    for _ in 0..n {
        let v = match orders.next() {
            TURN_CODE => (r.golomb(order::TURN)? as i32).wrapping_add(1),
            k => r.signed(k)?,
        };
        s.values.push(v);
    }
    r.finish()
}
