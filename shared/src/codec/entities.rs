//! The entity section of a snapshot (protocol 6): created entities, change
//! heads and their values, bit-packed (`PROTOCOL.md` 5.2 for the layout,
//! 2.5 for the codes).
//!
//! Byte-aligned varints spend a whole byte on a 3-bit angle change and three
//! on a 14-bit position. Here every number is an exponential-Golomb code of
//! order `k`, chosen per field from the values that field carries: small
//! values cost `k + 1` bits, and each doubling of the range one bit more
//! on either side of the value. Any `u32` and any `i32` can be coded, so
//! every [`SnapshotMsg`] round-trips, however unlikely its numbers; each
//! number has exactly one code, so re-encoding a decoded message gives the
//! same bytes. The one exception: a created entity's spawn hit points are
//! one bit, and the decoder also accepts them sent in full (the encoder
//! never does).
//!
//! Bits are packed most significant first: stream bit `i` is bit
//! `7 - i % 8` of byte `i / 8`, and a field of width `w` occupies the next
//! `w` stream bits from its most significant bit down, so a code is one
//! shift and one OR. The last byte is padded with zero bits.

use super::zigzag;
use crate::rules::MAX_HP;
use crate::snapshot::{EntityCreate, EntityKind, SnapshotMsg, field_counts};

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
/// The fewest bits a value can take: a code of the lowest value order.
const MIN_VALUE_BITS: u64 = 1 + min(
    min(min(order::POS, order::VEL), min(order::TURN, order::ANGLE)),
    min(order::HP, order::SURPLUS),
) as u64;

const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

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
    /// Truncated, an overlong code, a number above `u32::MAX`, a kind out
    /// of range, a head gap that does not fit beside its mask, trailing
    /// bytes or nonzero padding.
    Malformed(&'static str),
}

/// The inverse of [`zigzag`], bincode's signed integer mapping.
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

/// Appends bits to a byte vector, 64 at a time.
///
/// Whether a code fills the accumulator depends on the lengths of the codes
/// before it, so the test is a misprediction every few flushes; flushing 64
/// bits rather than 32 halves the flushes, and so those mispredictions:
/// 5-11% off the encoder at 1,000 and 5,000 entities (`BENCHMARKS.md`
/// section 2, session 26). A flush after every code, to have no branch at
/// all, was slower: its `fill` arithmetic lengthens the chain every code
/// waits on (section 8).
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Pending bits in the low `fill` bits, the oldest highest (bits above
    /// them are stale). Fewer than 64 between calls.
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
        let fill = self.fill + width;
        if fill < 64 {
            self.acc = (self.acc << width) | v;
            self.fill = fill;
        } else {
            // The pending bits and the first `width - rest` of `v` make a
            // whole word (the old `fill` was at least 32, so the shift is
            // below 64); the last `rest` bits of `v` stay pending.
            let rest = fill - 64;
            let word = (self.acc << (width - rest)) | (v >> rest);
            self.out.extend_from_slice(&word.to_be_bytes());
            self.acc = v;
            self.fill = rest;
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

    /// A change value. Out of line: the walk over the heads calls it from
    /// eight places.
    #[inline(never)]
    fn value(&mut self, code: Code) -> Result<i32, SectionError> {
        match code {
            Code::Signed(k) => self.signed(k),
            Code::TurnAge => Ok((self.golomb(order::TURN)? as i32).wrapping_add(1)),
        }
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

/// How a value is coded: zigzag with order `k`, or, for the turn age,
/// unsigned as `(k - 1) as u32` with order [`order::TURN`].
#[derive(Clone, Copy)]
enum Code {
    Signed(u32),
    TurnAge,
}

/// Calls `f` with the code of each value in order, until `f` returns an
/// error, which it returns: the values are in columns (see
/// [`SnapshotMsg::values`]): two `POS` values for each head with `POS`,
/// then two `VEL` values for each head with `VEL`, each pair followed by
/// its turn age when `turn` (that is `base_age` ≥ 2), then one `ANGLE`
/// value for each head with `ANGLE`, one `HP` value for each with `HP`;
/// then [`order::SURPLUS`] for values the heads do not ask for. `f` knows
/// how many values there are, and stops the walk after the last.
///
/// The one statement of which code each value has, for the encoder and the
/// decoder. Each column is a loop of one code: no branch on which fields a
/// head has, which is as good as random (protocol 5 walked the values head
/// by head, and its encoder spent a third of its time on mispredicted
/// branches; `BENCHMARKS.md` section 2).
#[inline(always)]
fn for_each_code<E>(heads: &[u32], turn: bool, mut f: impl FnMut(Code) -> Result<(), E>) -> E {
    macro_rules! code {
        ($code:expr) => {
            if let Err(e) = f($code) {
                return e;
            }
        };
    }
    let [pos, vel, angle, hp] = field_counts(heads);
    for _ in 0..pos {
        code!(Code::Signed(order::POS));
        code!(Code::Signed(order::POS));
    }
    for _ in 0..vel {
        code!(Code::Signed(order::VEL));
        code!(Code::Signed(order::VEL));
        if turn {
            code!(Code::TurnAge);
        }
    }
    for _ in 0..angle {
        code!(Code::Signed(order::ANGLE));
    }
    for _ in 0..hp {
        code!(Code::Signed(order::HP));
    }
    loop {
        code!(Code::Signed(order::SURPLUS));
    }
}

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
        // The mask and the gap's code in one write when they fit 32 bits
        // (a gap below 2^14): one flush test a head instead of two.
        let x = u64::from(head >> 4) + (1 << order::HEAD_GAP);
        let width = 2 * (64 - x.leading_zeros()) - order::HEAD_GAP - 1;
        if width <= 28 {
            w.put(u64::from(head & 0xF) << width | x, width + 4);
        } else {
            w.put(u64::from(head & 0xF), 4);
            w.golomb(head >> 4, order::HEAD_GAP);
        }
    }
    w.golomb(s.values.len() as u32, order::COUNT);
    let mut values = s.values.iter();
    // The walk ends where the values do.
    struct End;
    let End = for_each_code(
        &s.changed,
        s.base_age >= 2,
        #[inline(always)]
        |code| {
            let &v = values.next().ok_or(End)?;
            match code {
                Code::Signed(k) => w.signed(v, k),
                Code::TurnAge => w.golomb(v.wrapping_sub(1) as u32, order::TURN),
            }
            Ok(())
        },
    );
    w.finish();
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
    let values = &mut s.values;
    // The walk ends after the `n`th value (`None`), or at a bad code.
    let stop = for_each_code(&s.changed, s.base_age >= 2, |code| {
        if values.len() == n {
            return Err(None);
        }
        values.push(r.value(code).map_err(Some)?);
        Ok(())
    });
    if let Some(e) = stop {
        return Err(e);
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fields;

    fn bits_of(write: impl FnOnce(&mut BitWriter<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        write(&mut w);
        w.finish();
        out
    }

    #[test]
    fn golomb_codes_are_the_textbook_ones() {
        // Order 0: 1, 010, 011, 00100; order 2: 100, 111, 01000.
        assert_eq!(bits_of(|w| w.golomb(0, 0)), [0b1000_0000]);
        assert_eq!(bits_of(|w| w.golomb(1, 0)), [0b0100_0000]);
        assert_eq!(bits_of(|w| w.golomb(2, 0)), [0b0110_0000]);
        assert_eq!(bits_of(|w| w.golomb(3, 0)), [0b0010_0000]);
        assert_eq!(bits_of(|w| w.golomb(0, 2)), [0b1000_0000]);
        assert_eq!(bits_of(|w| w.golomb(3, 2)), [0b1110_0000]);
        assert_eq!(bits_of(|w| w.golomb(4, 2)), [0b0100_0000]);
        // Codes follow each other with no gap: 1 | 010 | 011 | 00100.
        let b = bits_of(|w| {
            for u in 0..4 {
                w.golomb(u, 0);
            }
        });
        assert_eq!(b, [0b1010_0110, 0b0100_0000]);
    }

    #[test]
    fn every_order_round_trips_its_boundaries() {
        for k in 0..=16 {
            let mut values = vec![0, 1, u32::MAX, u32::MAX - 1, 1 << 16, (1 << 16) - 1];
            for shift in 0..32 {
                let p = 1u32 << shift;
                values.extend([p, p - 1, p.saturating_add(1)]);
            }
            values.extend((0..8).map(|i| (1u32 << k) + i));
            let bytes = bits_of(|w| {
                for &u in &values {
                    w.golomb(u, k);
                }
            });
            let mut r = BitReader::new(&bytes);
            let mut total = 0;
            for &u in &values {
                let before = r.at;
                assert_eq!(r.golomb(k), Ok(u), "order {k}");
                let n = 64 - (u64::from(u) + (1 << k)).leading_zeros();
                assert_eq!(r.at - before, (2 * n - k - 1) as usize, "length of {u}");
                total = r.at;
            }
            assert_eq!(bytes.len(), total.div_ceil(8));
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn signed_values_round_trip_through_zigzag() {
        for v in [0, -1, 1, -2, 2, 127, -128, i32::MAX, i32::MIN, 1 << 20] {
            for k in [0, 2, 6] {
                let bytes = bits_of(|w| w.signed(v, k));
                assert_eq!(BitReader::new(&bytes).signed(k), Ok(v));
            }
        }
    }

    #[test]
    fn bad_codes_are_refused() {
        // 33 zeros: longer than any number's code at order 0.
        let overlong = [0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            BitReader::new(&overlong).golomb(0),
            Err(SectionError::Malformed("entity section: overlong number"))
        );
        // 32 zeros and 33 bits of x = 2^33 - 1: above u32::MAX at order 0.
        let mut big = vec![0, 0, 0, 0];
        big.extend([0xff, 0xff, 0xff, 0xff, 0x80]);
        assert_eq!(
            BitReader::new(&big).golomb(0),
            Err(SectionError::Malformed(
                "entity section: number above u32::MAX"
            ))
        );
        // u32::MAX itself is fine at order 0: x = 2^32 exactly.
        let max = bits_of(|w| w.golomb(u32::MAX, 0));
        assert_eq!(BitReader::new(&max).golomb(0), Ok(u32::MAX));
        // Truncated: the zeros run off the end, or the number does.
        assert_eq!(BitReader::new(&[0]).golomb(0), Err(TRUNCATED));
        assert_eq!(BitReader::new(&[]).golomb(4), Err(TRUNCATED));
        assert_eq!(BitReader::new(&[0b0000_0001]).golomb(0), Err(TRUNCATED));
        assert_eq!(BitReader::new(&[0b1000_0000]).bits(9), Err(TRUNCATED));
    }

    fn section(s: &SnapshotMsg) -> Vec<u8> {
        let mut out = Vec::new();
        pack(s, &mut out);
        out
    }

    fn unpacked(bytes: &[u8], base_age: u32) -> Result<SnapshotMsg, SectionError> {
        let mut s = SnapshotMsg {
            base_age,
            ..SnapshotMsg::default()
        };
        unpack(bytes, &mut s, crate::codec::MAX_SERVER_MESSAGE).map(|()| s)
    }

    fn shot() -> EntityCreate {
        EntityCreate {
            gap: 3,
            kind: EntityKind::Projectile,
            x: 9_000,
            y: 6_000,
            vx: 68,
            vy: -68,
            angle: 224,
            hp: 1,
        }
    }

    #[test]
    fn what_common_records_cost() {
        // An empty section: three zero counts of 5 bits, 2 bytes.
        assert_eq!(section(&SnapshotMsg::default()).len(), 2);
        // A new shot in the far corner of the arena, moving diagonally:
        // gap 3 (3 bits), kind (2), x and y (15 each), vx and vy (9 each),
        // angle (8), hit points (1): 62 bits, 12 bytes as varints.
        let one_shot = SnapshotMsg {
            created: vec![shot()],
            ..SnapshotMsg::default()
        };
        assert_eq!(section(&one_shot).len(), (15 + 62_usize).div_ceil(8));
        // 100 players who re-aimed by 5/256 of a turn, ids consecutive: a
        // 5-bit head (mask and gap 0) and a 5-bit angle each; counts of 5,
        // 9 and 9 bits.
        let reaims = SnapshotMsg {
            base_age: 10,
            changed: vec![fields::ANGLE; 100],
            values: vec![5; 100],
            ..SnapshotMsg::default()
        };
        assert_eq!(
            section(&reaims).len(),
            (5 + 9 + 100 * 5 + 9 + 100 * 5_usize).div_ceil(8)
        );
    }

    #[test]
    fn hit_points_other_than_the_spawn_value_are_sent() {
        for (kind, hp) in [
            (EntityKind::Projectile, 0),
            (EntityKind::Projectile, 100),
            (EntityKind::Projectile, 1),
            (EntityKind::Player, 1),
            (EntityKind::Npc, 255),
            (EntityKind::Player, MAX_HP),
            (EntityKind::Npc, MAX_HP),
        ] {
            let s = SnapshotMsg {
                created: vec![EntityCreate { kind, hp, ..shot() }],
                ..SnapshotMsg::default()
            };
            let bytes = section(&s);
            // 77 bits with the one-bit default, 85 with the value.
            let bits = if hp == default_hp(kind) { 77 } else { 85 };
            assert_eq!(bytes.len(), bits / 8 + 1, "{kind:?} with {hp}");
            assert_eq!(unpacked(&bytes, 0).map(|u| u.created), Ok(s.created));
        }
    }

    /// Protocol 6: the values travel column by column, each with its
    /// column's code, whatever the order of the heads that own them.
    #[test]
    fn values_travel_in_columns_each_with_its_code() {
        let s = SnapshotMsg {
            base_age: 3,
            // Id 0 re-aimed and hit, id 1 turned, id 2 moved and re-aimed.
            changed: vec![
                fields::ANGLE | fields::HP,
                fields::VEL,
                fields::POS | fields::ANGLE,
            ],
            // POS (id 2), VEL and its turn age (id 1), ANGLE (ids 0, 2),
            // HP (id 0).
            values: vec![5, -6, 7, -8, 2, 9, -10, -25],
            ..SnapshotMsg::default()
        };
        let expected = bits_of(|w| {
            w.golomb(0, order::COUNT);
            w.golomb(3, order::COUNT);
            for head in &s.changed {
                w.put(u64::from(head & 0xF), 4);
                w.golomb(0, order::HEAD_GAP);
            }
            w.golomb(8, order::COUNT);
            w.signed(5, order::POS);
            w.signed(-6, order::POS);
            w.signed(7, order::VEL);
            w.signed(-8, order::VEL);
            w.golomb(2 - 1, order::TURN);
            w.signed(9, order::ANGLE);
            w.signed(-10, order::ANGLE);
            w.signed(-25, order::HP);
        });
        assert_eq!(section(&s), expected);
        assert_eq!(unpacked(&expected, 3).map(|u| u.values), Ok(s.values));
    }

    #[test]
    fn values_take_their_heads_codes_and_the_turn_age_is_unsigned() {
        let heads = vec![
            fields::POS | fields::VEL | fields::ANGLE | fields::HP,
            1 << 4 | fields::VEL,
        ];
        for base_age in [1, 2, 10] {
            let turn = base_age >= 2;
            let mut values = vec![3, -3, 20, -20];
            if turn {
                values.push(7);
            }
            values.extend([-4, -25, 32, 0]);
            if turn {
                values.push(i32::MIN);
            }
            values.extend([9, -9]); // surplus
            let s = SnapshotMsg {
                base_age,
                changed: heads.clone(),
                values: values.clone(),
                ..SnapshotMsg::default()
            };
            let u = unpacked(&section(&s), base_age).expect("round trip");
            assert_eq!((u.changed, u.values), (heads.clone(), values));
        }
        // Read against another age, the same bits mean other values.
        let s = SnapshotMsg {
            base_age: 10,
            changed: vec![fields::VEL],
            values: vec![1, 1, 1],
            ..SnapshotMsg::default()
        };
        assert_ne!(unpacked(&section(&s), 1).map(|u| u.values), Ok(s.values));
        // Fewer values than the heads ask for: kept as they are, for
        // `apply` to refuse.
        let short = SnapshotMsg {
            base_age: 3,
            changed: vec![fields::POS | fields::ANGLE],
            values: vec![1],
            ..SnapshotMsg::default()
        };
        assert_eq!(unpacked(&section(&short), 3).map(|u| u.values), Ok(vec![1]));
    }

    #[test]
    fn bad_sections_are_refused() {
        let good = section(&SnapshotMsg {
            created: vec![shot()],
            changed: vec![2 << 4 | fields::ANGLE],
            values: vec![-1],
            ..SnapshotMsg::default()
        });
        assert!(unpacked(&good, 1).is_ok());
        // Every strict prefix is truncated, or leaves a count unread.
        for end in 0..good.len() {
            assert!(unpacked(&good[..end], 1).is_err(), "prefix of {end}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            unpacked(&trailing, 1),
            Err(SectionError::Malformed("entity section: trailing bytes"))
        );
        // The section ends 3 bits into its last byte; a one in the padding.
        let mut padded = good.clone();
        *padded.last_mut().expect("not empty") |= 1;
        assert_eq!(
            unpacked(&padded, 1),
            Err(SectionError::Malformed("entity section: nonzero padding"))
        );
        // Kind 3: the count (5 bits) and the gap (3 bits) come first.
        let mut kind = good.clone();
        kind[1] |= 0b1100_0000;
        assert_eq!(
            unpacked(&kind, 1),
            Err(SectionError::Malformed("entity section: kind 3"))
        );
        // A head gap that would not fit beside its mask.
        let wide = section(&SnapshotMsg {
            changed: vec![u32::MAX],
            ..SnapshotMsg::default()
        });
        assert!(unpacked(&wide, 1).is_ok());
        let mut w = Vec::new();
        let mut bw = BitWriter::new(&mut w);
        bw.golomb(0, order::COUNT);
        bw.golomb(1, order::COUNT);
        bw.put(1, 4);
        bw.golomb(1 << 28, order::HEAD_GAP);
        bw.golomb(0, order::COUNT);
        bw.finish();
        assert_eq!(
            unpacked(&w, 1),
            Err(SectionError::Malformed(
                "entity section: head gap above 2^28"
            ))
        );
    }

    #[test]
    fn counts_are_checked_against_the_bits_and_the_budget() {
        // A claimed million heads in a few bytes: refused before reserving.
        let mut w = Vec::new();
        let mut bw = BitWriter::new(&mut w);
        bw.golomb(0, order::COUNT);
        bw.golomb(1_000_000, order::COUNT);
        bw.finish();
        assert_eq!(unpacked(&w, 1), Err(TRUNCATED));
        // Within the bits, but over the budget: 10 values cost 40 bytes.
        let s = SnapshotMsg {
            values: vec![0; 10],
            ..SnapshotMsg::default()
        };
        let bytes = section(&s);
        let mut out = SnapshotMsg::default();
        assert_eq!(unpack(&bytes, &mut out, 40), Ok(()));
        assert_eq!(unpack(&bytes, &mut out, 39), Err(SectionError::TooLarge));
    }
}
