//! The byte format, and the only module that knows it.
//!
//! Every message is one WebSocket binary message holding one bincode 2 value
//! (`config::standard()`: little endian, variable-length integers). In a
//! snapshot, the entity lists travel as one byte string of bit-packed
//! numbers (`codec/entities.rs`, `PROTOCOL.md` 5.2), which is where its
//! bytes are. bincode is
//! unmaintained upstream (RUSTSEC-2025-0141, accepted in `deny.toml`); it is
//! pinned and used nowhere else, so swapping it means rewriting this file and
//! nothing more.
//!
//! Every decode of untrusted bytes runs with a hard byte limit: a forged
//! length prefix fails with [`CodecError::TooLarge`] before anything is
//! allocated for it. Trailing bytes after a message are an error too, so one
//! message means exactly one value.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Tick;
use crate::protocol::{
    ClientMsg, DATAGRAM_ID_BYTES, DATAGRAM_TAG_BYTES, DatagramId, DatagramKey, InputCmd,
    MAX_CLIENT_DATAGRAM, MAX_DATAGRAM_MESSAGES, ServerMsg,
};
use crate::snapshot::{PlayerInfo, ScoreDelta, SnapshotMsg};

mod entities;

/// Largest client message the server accepts, in bytes (1 KiB). A hello is
/// about 10 bytes plus its name (at most 64 bytes after the server cuts it),
/// room name and tokens (up to about 600 bytes with a 512-byte auth token);
/// an input is 11 to 15. The limit also bounds the sum of a fragmented
/// message.
///
/// The same number bounds decoding, where bincode charges each value its
/// in-memory size (4 per `u32`, 8 per length prefix) rather than its wire
/// bytes: the decoder's budget is never larger than the message.
pub const MAX_CLIENT_MESSAGE: usize = 1024;

/// Largest server message a client accepts, in bytes (16 MiB): a full
/// snapshot of 50,000 entities is about 0.35 MiB.
pub const MAX_SERVER_MESSAGE: usize = 16 << 20;

type Standard = Configuration<LittleEndian, Varint>;
const ENCODE: Standard = config::standard();
const DECODE_CLIENT: Configuration<LittleEndian, Varint, Limit<MAX_CLIENT_MESSAGE>> =
    config::standard().with_limit::<MAX_CLIENT_MESSAGE>();
const DECODE_SERVER: Configuration<LittleEndian, Varint, Limit<MAX_SERVER_MESSAGE>> =
    config::standard().with_limit::<MAX_SERVER_MESSAGE>();

/// Why bytes are not a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message, or a length inside it, exceeds the limit.
    #[error("message exceeds {limit} bytes")]
    TooLarge {
        /// The limit that was hit, in bytes.
        limit: usize,
    },
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Anything else: truncated input, unknown variant, invalid UTF-8, ...
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    out.clear();
    // Writing into a Vec cannot fail, and every type here is serializable.
    if let Err(e) = bincode::serde::encode_into_std_write(msg, out, ENCODE) {
        unreachable!("encoding into a Vec failed: {e}");
    }
}

fn decode<T: DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge { limit });
    }
    match bincode::serde::decode_from_slice::<T, C>(bytes, config) {
        Ok((msg, used)) if used == bytes.len() => Ok(msg),
        Ok((_, used)) => Err(CodecError::TrailingBytes(bytes.len() - used)),
        Err(bincode::error::DecodeError::LimitExceeded) => Err(CodecError::TooLarge { limit }),
        Err(bincode::error::DecodeError::OtherString(s)) if s == SECTION_TOO_LARGE => {
            Err(CodecError::TooLarge { limit })
        }
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

/// Encodes a client message into `out` (cleared first).
pub fn encode_client(msg: &ClientMsg, out: &mut Vec<u8>) {
    encode_into(msg, out);
}

/// Encodes a client message into a new buffer.
#[must_use]
pub fn client_bytes(msg: &ClientMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client(msg, &mut out);
    out
}

/// Decodes a client message, bounded by [`MAX_CLIENT_MESSAGE`].
pub fn decode_client(bytes: &[u8]) -> Result<ClientMsg, CodecError> {
    decode(bytes, DECODE_CLIENT, MAX_CLIENT_MESSAGE)
}

/// A message a client may send in a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramMsg {
    /// [`ClientMsg::Input`].
    Input(InputCmd),
    /// [`ClientMsg::Ack`].
    Ack(Tick),
}

impl From<DatagramMsg> for ClientMsg {
    fn from(msg: DatagramMsg) -> Self {
        match msg {
            DatagramMsg::Input(cmd) => Self::Input(cmd),
            DatagramMsg::Ack(tick) => Self::Ack(tick),
        }
    }
}

/// The byte signed before a client's datagram: a datagram of one direction
/// never passes for one of the other.
const TO_SERVER: u8 = 1;
/// The byte signed before a server's datagram.
const TO_CLIENT: u8 = 2;

/// A connection's datagram signer (`PROTOCOL.md` section 3.7): HMAC-SHA256
/// keyed once with its [`DatagramKey`], whose first [`DATAGRAM_TAG_BYTES`]
/// bytes end every datagram of both directions. Its `Debug` output is
/// redacted.
#[derive(Clone)]
pub struct DatagramMac(Hmac<Sha256>);

impl std::fmt::Debug for DatagramMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatagramMac(<redacted>)")
    }
}

impl DatagramMac {
    /// The signer of the connection whose key is `key`.
    #[must_use]
    pub fn new(key: &DatagramKey) -> Self {
        // HMAC takes a key of any length.
        Self(Hmac::new_from_slice(&key.0).unwrap_or_else(|_| unreachable!()))
    }

    fn mac(&self, direction: u8, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(&[direction]);
        mac.update(signed);
        mac
    }

    fn tag(&self, direction: u8, signed: &[u8]) -> [u8; DATAGRAM_TAG_BYTES] {
        let full = self.mac(direction, signed).finalize().into_bytes();
        let mut tag = [0; DATAGRAM_TAG_BYTES];
        tag.copy_from_slice(&full[..DATAGRAM_TAG_BYTES]);
        tag
    }

    /// Splits `datagram` into what is signed and its tag, if the tag (of
    /// `direction`) is right; compares in constant time.
    fn verify<'a>(&self, direction: u8, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let (signed, tag) = datagram.split_last_chunk::<DATAGRAM_TAG_BYTES>()?;
        self.mac(direction, signed)
            .verify_truncated_left(tag)
            .ok()
            .map(|()| signed)
    }

    /// Signs a client datagram: appends the tag of everything in
    /// `datagram` (its id and messages). [`encode_datagram`] does this;
    /// a client that writes its datagrams itself calls it last.
    pub fn seal_client(&self, datagram: &mut Vec<u8>) {
        let tag = self.tag(TO_SERVER, datagram);
        datagram.extend_from_slice(&tag);
    }

    /// Turns an encoded snapshot message into the server's datagram: its
    /// tag appended.
    pub fn seal_snapshot(&self, snapshot: &mut Vec<u8>) {
        let tag = self.tag(TO_CLIENT, snapshot);
        snapshot.extend_from_slice(&tag);
    }

    /// The snapshot message a server datagram carries, or `None` if its tag
    /// is wrong (forged, corrupted, or of another connection): drop it like
    /// a lost one.
    #[must_use]
    pub fn open_snapshot<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        self.verify(TO_CLIENT, datagram)
    }
}

/// A client datagram (`PROTOCOL.md` section 3.7): the connection's id, then
/// one to [`MAX_DATAGRAM_MESSAGES`] messages, each an input or an ack, then
/// its tag. Decoding a valid one allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientDatagram {
    /// The id of the connection it belongs to.
    pub id: DatagramId,
    msgs: [DatagramMsg; MAX_DATAGRAM_MESSAGES],
    len: usize,
}

impl ClientDatagram {
    /// Its messages, in the order the client wrote them.
    #[must_use]
    pub fn messages(&self) -> &[DatagramMsg] {
        &self.msgs[..self.len]
    }
}

/// Encodes a client datagram into `out` (cleared first): `id`, then each
/// of `msgs` as [`encode_client`] would, back to back, then the tag `mac`
/// gives them. The caller keeps to [`MAX_DATAGRAM_MESSAGES`]; more would
/// be refused by the server whole.
pub fn encode_datagram(
    id: &DatagramId,
    mac: &DatagramMac,
    msgs: &[DatagramMsg],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&id.0);
    for msg in msgs {
        let msg = ClientMsg::from(*msg);
        if let Err(e) = bincode::serde::encode_into_std_write(&msg, out, ENCODE) {
            unreachable!("encoding into a Vec failed: {e}");
        }
    }
    mac.seal_client(out);
}

/// The connection a client datagram names, to look up its key; `None` for
/// one too short to hold an id and a tag.
#[must_use]
pub fn datagram_id(datagram: &[u8]) -> Option<DatagramId> {
    if datagram.len() < DATAGRAM_ID_BYTES + DATAGRAM_TAG_BYTES {
        return None;
    }
    datagram.first_chunk().copied().map(DatagramId)
}

/// Why a client datagram was not read.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    /// Its tag is wrong for the key it was checked with, or it has none:
    /// not the client's (forged, corrupted, or replayed from another
    /// connection). Dropped; it says nothing about the client.
    #[error("datagram tag does not verify")]
    Unauthentic,
    /// Signed by the client, yet not a datagram of the protocol: the
    /// client's fault, like a malformed message on its WebSocket.
    #[error(transparent)]
    Malformed(#[from] CodecError),
}

/// Decodes a client datagram signed with `mac`: checks its tag first, then
/// reads it, bounded by [`MAX_CLIENT_DATAGRAM`]: the id, then messages up
/// to the tag. Past the tag, an empty datagram, more than
/// [`MAX_DATAGRAM_MESSAGES`] messages, a message other than an input or an
/// ack, or one cut short, is [`DatagramError::Malformed`].
pub fn decode_datagram(bytes: &[u8], mac: &DatagramMac) -> Result<ClientDatagram, DatagramError> {
    let id = datagram_id(bytes).ok_or(DatagramError::Unauthentic)?;
    let signed = mac
        .verify(TO_SERVER, bytes)
        .ok_or(DatagramError::Unauthentic)?;
    if bytes.len() > MAX_CLIENT_DATAGRAM {
        return Err(CodecError::TooLarge {
            limit: MAX_CLIENT_DATAGRAM,
        }
        .into());
    }
    let mut rest = &signed[DATAGRAM_ID_BYTES..];
    let mut datagram = ClientDatagram {
        id,
        msgs: [DatagramMsg::Ack(Tick(0)); MAX_DATAGRAM_MESSAGES],
        len: 0,
    };
    while !rest.is_empty() {
        if datagram.len == MAX_DATAGRAM_MESSAGES {
            return Err(CodecError::Malformed(format!(
                "more than {MAX_DATAGRAM_MESSAGES} messages in a datagram"
            ))
            .into());
        }
        let (msg, used): (ClientMsg, usize) =
            bincode::serde::decode_from_slice(rest, DECODE_CLIENT)
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
        datagram.msgs[datagram.len] = match msg {
            ClientMsg::Input(cmd) => DatagramMsg::Input(cmd),
            ClientMsg::Ack(tick) => DatagramMsg::Ack(tick),
            _ => {
                return Err(CodecError::Malformed(
                    "only inputs and acks travel in datagrams".into(),
                )
                .into());
            }
        };
        datagram.len += 1;
        rest = &rest[used..];
    }
    if datagram.len == 0 {
        return Err(CodecError::Malformed("a datagram with no message".into()).into());
    }
    Ok(datagram)
}

/// Reads the protocol version of a [`ClientMsg::Hello`] from its first bytes,
/// even when the rest of the message is from a newer protocol this server
/// cannot parse. `None` when the bytes do not start like a hello.
#[must_use]
pub fn peek_hello_version(bytes: &[u8]) -> Option<u32> {
    let (variant, used): (u32, usize) =
        bincode::serde::decode_from_slice(bytes, DECODE_CLIENT).ok()?;
    if variant != 0 {
        return None;
    }
    let (version, _): (u32, usize) =
        bincode::serde::decode_from_slice(bytes.get(used..)?, DECODE_CLIENT).ok()?;
    Some(version)
}

/// Borrowing twin of [`ServerMsg`] for the variants the server encodes from
/// reused buffers. Same variant order, so the same bytes. Only the tests use
/// it now, as the reference [`encode_snapshot`] must match byte for byte.
#[cfg(test)]
#[derive(Serialize)]
enum ServerMsgRef<'a> {
    #[allow(
        dead_code,
        reason = "variant index placeholder: Welcome is encoded owned"
    )]
    Welcome(()),
    Snapshot(&'a SnapshotMsg),
}

/// Variant index of [`ServerMsg::Snapshot`].
const SNAPSHOT_VARIANT: u32 = 1;

/// The serde error that stands for [`CodecError::TooLarge`] from inside a
/// snapshot's entity section.
const SECTION_TOO_LARGE: &str = "entity section exceeds the decode budget";

/// A snapshot's bytes on the wire (`PROTOCOL.md` 5.2): the entity lists
/// `created`, `changed` and `values` travel as one bit-packed byte string
/// (`codec/entities.rs`), everything else as bincode values.
impl Serialize for SnapshotMsg {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut section = Vec::new();
        entities::pack(self, &mut section);
        let mut st = ser.serialize_struct("SnapshotMsg", 9)?;
        st.serialize_field("tick", &self.tick)?;
        st.serialize_field("base_age", &self.base_age)?;
        st.serialize_field("input_ack", &self.input_ack)?;
        st.serialize_field("checksum", &self.checksum)?;
        st.serialize_field("removed", &self.removed)?;
        st.serialize_field("entities", &Section(section))?;
        st.serialize_field("players_removed", &self.players_removed)?;
        st.serialize_field("players_upserted", &self.players_upserted)?;
        st.serialize_field("players_scored", &self.players_scored)?;
        st.end()
    }
}

/// The fields of [`SnapshotMsg`] as they are on the wire.
#[derive(Deserialize)]
#[serde(rename = "SnapshotMsg")]
struct SnapshotWire {
    tick: Tick,
    base_age: u32,
    input_ack: u32,
    checksum: u32,
    removed: Vec<u32>,
    entities: Section,
    players_removed: Vec<u32>,
    players_upserted: Vec<PlayerInfo>,
    players_scored: Vec<ScoreDelta>,
}

impl<'de> Deserialize<'de> for SnapshotMsg {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = SnapshotWire::deserialize(de)?;
        let mut s = SnapshotMsg {
            tick: w.tick,
            base_age: w.base_age,
            input_ack: w.input_ack,
            checksum: w.checksum,
            removed: w.removed,
            players_removed: w.players_removed,
            players_upserted: w.players_upserted,
            players_scored: w.players_scored,
            ..SnapshotMsg::default()
        };
        // The section's lists have a budget of their own, the same size as
        // the message's: bincode charged the section its bytes.
        entities::unpack(&w.entities.0, &mut s, MAX_SERVER_MESSAGE).map_err(|e| match e {
            entities::SectionError::TooLarge => D::Error::custom(SECTION_TOO_LARGE),
            entities::SectionError::Malformed(why) => D::Error::custom(why),
        })?;
        Ok(s)
    }
}

/// A length-prefixed byte string: bincode writes the length and copies the
/// bytes (as it would a `Vec<u8>`), without a serde call per byte.
struct Section(Vec<u8>);

impl Serialize for Section {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Section;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Section, E> {
                Ok(Section(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Section, E> {
                Ok(Section(v.to_vec()))
            }
        }
        de.deserialize_byte_buf(Bytes)
    }
}

/// Writes bincode 2 `standard()` values straight into a `Vec`, without
/// serde's per-value trait calls: the snapshot is the only message sent per
/// client per tick, and through serde its encoding cost more than the diff.
/// The bytes are bincode's exactly (a proptest compares them).
///
/// Values are staged in a small array on the stack and appended to the
/// `Vec` a chunk at a time, so each byte costs a store at a position kept in
/// a register, not a `Vec::push` with its capacity test and length update.
struct Out<'a> {
    out: &'a mut Vec<u8>,
    chunk: [u8; CHUNK],
    at: usize,
}

const CHUNK: usize = 256;

/// bincode's signed integer mapping: 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
#[inline(always)]
fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}
/// Longest single write: a tag and a `u64`.
const LONGEST: usize = 9;
/// Longest `u32` varint: a tag and the value.
const LONGEST_U32: usize = 5;

impl<'a> Out<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            chunk: [0; CHUNK],
            at: 0,
        }
    }

    /// Appends the staged bytes to the `Vec`.
    fn flush(&mut self) {
        self.out.extend_from_slice(&self.chunk[..self.at]);
        self.at = 0;
    }

    /// Makes room for one write of up to [`LONGEST`] bytes.
    #[inline(always)]
    fn room(&mut self) {
        if self.at > CHUNK - LONGEST {
            self.flush();
        }
    }

    /// Unsigned varint: one byte below 251, else a tag and the value LE.
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        self.room();
        if v < 251 {
            self.chunk[self.at] = v as u8;
            self.at += 1;
        } else {
            self.at = self.wide(self.at, v);
        }
    }

    /// A varint of 3 bytes or more, at `at`; returns the position after it.
    #[inline(never)]
    fn wide(&mut self, at: usize, v: u64) -> usize {
        let c = &mut self.chunk;
        if v <= u64::from(u16::MAX) {
            c[at] = 0xfb;
            c[at + 1..at + 3].copy_from_slice(&(v as u16).to_le_bytes());
            at + 3
        } else if v <= u64::from(u32::MAX) {
            c[at] = 0xfc;
            c[at + 1..at + 5].copy_from_slice(&(v as u32).to_le_bytes());
            at + 5
        } else {
            c[at] = 0xfd;
            c[at + 1..at + 9].copy_from_slice(&v.to_le_bytes());
            at + 9
        }
    }

    /// A run of `u32` varints.
    #[inline(always)]
    fn u32s(&mut self, values: &[u32]) {
        self.varints(values, |v| v);
    }

    /// A run of varints of `f(value)`, sixteen at a time.
    ///
    /// Nearly every id gap, change head and residual is below 251, one
    /// byte: a group of sixteen in which all are is tested at once (the
    /// compiler vectorizes the test) and stored at once, with one room
    /// test, where one at a time would cost a room test, a compare and a
    /// branch per byte. A group with a wider
    /// value falls back to one at a time. The position lives in a local,
    /// not in `self`, so the compiler need not reload it after every store.
    #[inline(always)]
    fn varints<T: Copy>(&mut self, values: &[T], f: impl Fn(T) -> u32) {
        const GROUP: usize = 16;
        let mut at = self.at;
        let mut rest = values;
        while let Some((group, tail)) = rest.split_first_chunk::<GROUP>() {
            if at > CHUNK - GROUP * LONGEST_U32 {
                self.at = at;
                self.flush();
                at = 0;
            }
            let group = group.map(&f);
            if group.iter().fold(false, |wide, &v| wide | (v >= 251)) {
                for v in group {
                    at = self.one_u32(at, v);
                }
            } else {
                self.chunk[at..at + GROUP].copy_from_slice(&group.map(|v| v as u8));
                at += GROUP;
            }
            rest = tail;
        }
        for &v in rest {
            if at > CHUNK - LONGEST_U32 {
                self.at = at;
                self.flush();
                at = 0;
            }
            at = self.one_u32(at, f(v));
        }
        self.at = at;
    }

    /// One `u32` varint at `at`, with room for it; returns the position
    /// after it.
    #[inline(always)]
    fn one_u32(&mut self, at: usize, v: u32) -> usize {
        if v < 251 {
            self.chunk[at] = v as u8;
            at + 1
        } else {
            self.wide(at, u64::from(v))
        }
    }

    /// Raw bytes of any length (a name).
    fn bytes(&mut self, b: &[u8]) {
        self.flush();
        self.out.extend_from_slice(b);
    }

    #[inline(always)]
    fn u32(&mut self, v: u32) {
        self.varint(u64::from(v));
    }

    /// Zigzag, then varint.
    #[inline(always)]
    fn i32(&mut self, v: i32) {
        self.u32(zigzag(v));
    }

    /// A collection or string length (a `u64` in bincode).
    #[inline(always)]
    fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    /// The bit-packed entity section ([`entities`]) with its byte length
    /// in front, packed straight into the `Vec` after room for a 3-byte
    /// length, which is then fixed up (a message of a few hundred bytes or
    /// more has one: only small ones move their section).
    fn entity_section(&mut self, s: &SnapshotMsg) {
        self.flush();
        let out = &mut *self.out;
        let start = out.len();
        out.extend_from_slice(&[0; 3]);
        entities::pack(s, out);
        let len = out.len() - start - 3;
        if let Ok(short) = u8::try_from(len)
            && short < 251
        {
            out[start] = short;
            out.copy_within(start + 3.., start + 1);
            out.truncate(out.len() - 2);
        } else if let Ok(mid) = u16::try_from(len) {
            out[start] = 0xfb;
            out[start + 1..start + 3].copy_from_slice(&mid.to_le_bytes());
        } else {
            let mut prefix = Vec::with_capacity(LONGEST);
            Out::new(&mut prefix).length_alone(len);
            out.splice(start..start + 3, prefix);
        }
    }

    /// Writes one collection length and flushes: for a length prefix
    /// built on its own.
    fn length_alone(mut self, n: usize) {
        self.len(n);
        self.flush();
    }

    fn snapshot(&mut self, s: &SnapshotMsg) {
        self.u32(SNAPSHOT_VARIANT);
        self.u32(s.tick.0);
        self.u32(s.base_age);
        self.u32(s.input_ack);
        self.u32(s.checksum);
        self.len(s.removed.len());
        self.u32s(&s.removed);
        self.entity_section(s);
        self.len(s.players_removed.len());
        self.u32s(&s.players_removed);
        self.len(s.players_upserted.len());
        for p in &s.players_upserted {
            self.u32(p.id);
            self.len(p.name.len());
            self.bytes(p.name.as_bytes());
            self.u32(p.score);
            self.u32(p.deaths);
        }
        self.len(s.players_scored.len());
        for d in &s.players_scored {
            self.u32(d.gap);
            self.i32(d.score);
            self.i32(d.deaths);
        }
    }
}

/// Encodes a server message into `out` (cleared first).
pub fn encode_server(msg: &ServerMsg, out: &mut Vec<u8>) {
    encode_into(msg, out);
}

/// Encodes a [`ServerMsg::Snapshot`] from a borrowed snapshot into `out`
/// (cleared first), so the server can reuse one snapshot buffer per client and
/// allocate nothing per tick.
pub fn encode_snapshot(snapshot: &SnapshotMsg, out: &mut Vec<u8>) {
    out.clear();
    let mut w = Out::new(out);
    w.snapshot(snapshot);
    w.flush();
}

/// A snapshot encoded once and sent to every client whose delta differs
/// only in [`SnapshotMsg::input_ack`].
///
/// Every client sees the whole arena, so two clients that acknowledged the
/// same baseline get the same delta except for their own input ack. A
/// server can diff and encode once per distinct baseline (a handful per
/// tick) instead of once per client, and give each client a copy with its
/// ack spliced in ([`SharedSnapshot::write_for`]): the per-client cost
/// becomes a `memcpy`, independent of the number of entities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedSnapshot {
    bytes: Vec<u8>,
    /// Where the `input_ack` varint starts in `bytes`, and its length.
    ack_at: usize,
    ack_len: usize,
}

impl SharedSnapshot {
    /// Encodes `snapshot` (whatever its `input_ack`) for sharing.
    #[must_use]
    pub fn new(snapshot: &SnapshotMsg) -> Self {
        let mut bytes = Vec::new();
        encode_snapshot(snapshot, &mut bytes);
        // The ack follows the variant, the tick and the baseline age.
        let ack_at = varint_len(SNAPSHOT_VARIANT)
            + varint_len(snapshot.tick.0)
            + varint_len(snapshot.base_age);
        Self {
            bytes,
            ack_at,
            ack_len: varint_len(snapshot.input_ack),
        }
    }

    /// Writes the snapshot with `input_ack` into `out` (cleared first):
    /// exactly the bytes [`encode_snapshot`] gives for the same message with
    /// that ack.
    pub fn write_for(&self, input_ack: u32, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.bytes.len() + 5);
        out.extend_from_slice(&self.bytes[..self.ack_at]);
        let mut w = Out::new(out);
        w.u32(input_ack);
        w.flush();
        out.extend_from_slice(&self.bytes[self.ack_at + self.ack_len..]);
    }

    /// Length of the encoding with an ack of `input_ack`, in bytes.
    #[must_use]
    pub fn len_for(&self, input_ack: u32) -> usize {
        self.bytes.len() - self.ack_len + varint_len(input_ack)
    }
}

/// Bytes of a `u32` varint.
fn varint_len(v: u32) -> usize {
    match v {
        0..=250 => 1,
        251..=65_535 => 3,
        _ => 5,
    }
}

/// Encodes a server message into a new buffer.
#[must_use]
pub fn server_bytes(msg: &ServerMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_server(msg, &mut out);
    out
}

/// Decodes a server message, bounded by [`MAX_SERVER_MESSAGE`].
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, CodecError> {
    decode(bytes, DECODE_SERVER, MAX_SERVER_MESSAGE)
}

/// Reads the header of a [`ServerMsg::Snapshot`]: its `tick`, `base_age`
/// and `input_ack` (`PROTOCOL.md` 5.2, fields 1 to 3), without decoding the
/// rest. `None` when the bytes are not a snapshot or end inside the header.
///
/// For load generators that acknowledge and time snapshots without
/// rebuilding the world: the rest of the message is not checked, so a
/// caller that needs a valid snapshot must use [`decode_server`].
#[must_use]
pub fn peek_snapshot_header(bytes: &[u8]) -> Option<(crate::Tick, u32, u32)> {
    // bincode itself reads the variant index and the three varints, so this
    // agrees with `decode_server` byte for byte (non-minimal varints, wide
    // tags out of range for a u32, ...).
    let ((variant, tick, base_age, input_ack), _): ((u32, crate::Tick, u32, u32), usize) =
        bincode::serde::decode_from_slice(bytes, DECODE_SERVER).ok()?;
    (variant == SNAPSHOT_VARIANT).then_some((tick, base_age, input_ack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tick;
    use crate::protocol::{
        AuthToken, DATAGRAM_KEY_BYTES, DisconnectReason, Hello, InputCmd, PROTOCOL_VERSION,
        RoomRequest, SessionToken, Welcome,
    };
    use crate::snapshot::{EntityCreate, EntityKind, PlayerInfo, ScoreDelta};
    use proptest::prelude::*;

    fn hello(name: &str) -> ClientMsg {
        ClientMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            name: name.into(),
            room: RoomRequest::Matchmake,
            auth: None,
            resume: None,
        })
    }

    /// What a client signs: `id`, then `body`, then the tag of both.
    fn signed(id: &DatagramId, mac: &DatagramMac, body: &[u8]) -> Vec<u8> {
        let mut bytes = id.0.to_vec();
        bytes.extend_from_slice(body);
        mac.seal_client(&mut bytes);
        bytes
    }

    #[test]
    fn a_datagram_is_its_id_its_messages_back_to_back_then_their_tag() {
        let id = DatagramId([0xd1; DATAGRAM_ID_BYTES]);
        let key = DatagramKey(std::array::from_fn(|i| i as u8));
        let mac = DatagramMac::new(&key);
        let input = InputCmd {
            seq: 300,
            tick: Tick(7),
            ack: Tick(6),
            buttons: 5,
            aim: 9,
        };
        let msgs = [DatagramMsg::Input(input), DatagramMsg::Ack(Tick(6))];
        let mut bytes = Vec::new();
        encode_datagram(&id, &mac, &msgs, &mut bytes);
        let mut expected = id.0.to_vec();
        expected.extend(client_bytes(&ClientMsg::Input(input)));
        expected.extend(client_bytes(&ClientMsg::Ack(Tick(6))));
        // The tag: HMAC-SHA256 under the key, of the direction byte (1, to
        // the server) and everything before the tag, cut to 8 bytes.
        let mut hmac = Hmac::<Sha256>::new_from_slice(&key.0).expect("any key length");
        hmac.update(&[1]);
        hmac.update(&expected);
        let tag = hmac.finalize().into_bytes();
        expected.extend_from_slice(&tag[..DATAGRAM_TAG_BYTES]);
        assert_eq!(bytes, expected);
        assert_eq!(datagram_id(&bytes), Some(id));
        let datagram = decode_datagram(&bytes, &mac).expect("decodes");
        assert_eq!(datagram.id, id);
        assert_eq!(datagram.messages(), &msgs);
    }

    /// PROTOCOL.md section 3.7's example, byte for byte: its tag was
    /// computed with Python's `hmac` module, not with this code.
    #[test]
    fn the_protocol_documents_example_datagram_is_what_the_codec_writes() {
        let id = DatagramId([0xd1, 0x7e, 0x55, 0x01, 0x9a, 0x2b, 0xc4, 0x30]);
        let key = DatagramKey(std::array::from_fn(|i| (i * 13 + 7) as u8));
        let input = |seq, tick: u32| {
            DatagramMsg::Input(InputCmd {
                seq,
                tick: Tick(tick),
                ack: Tick(tick - 1),
                buttons: 8,
                aim: 0,
            })
        };
        let mut bytes = Vec::new();
        encode_datagram(
            &id,
            &DatagramMac::new(&key),
            &[input(4, 99), input(5, 100)],
            &mut bytes,
        );
        let expected = "d17e55019a2bc430 010463620800 010564630800 4f02f9990eacaff1";
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected.replace(' ', ""));
    }

    /// Whatever a datagram without the key's tag holds, it is unauthentic,
    /// never malformed: only the client can get its connection closed.
    #[test]
    fn a_datagram_without_its_keys_tag_is_unauthentic() {
        let id = DatagramId([3; DATAGRAM_ID_BYTES]);
        let mac = DatagramMac::new(&DatagramKey([7; DATAGRAM_KEY_BYTES]));
        let other = DatagramMac::new(&DatagramKey([8; DATAGRAM_KEY_BYTES]));
        let mut good = Vec::new();
        encode_datagram(&id, &mac, &[DatagramMsg::Ack(Tick(1))], &mut good);
        assert!(decode_datagram(&good, &mac).is_ok());
        let mut forged = Vec::new();
        encode_datagram(&id, &other, &[DatagramMsg::Ack(Tick(1))], &mut forged);
        let mut as_snapshot = good[..good.len() - DATAGRAM_TAG_BYTES].to_vec();
        mac.seal_snapshot(&mut as_snapshot);
        let mut cases = vec![
            ("another key's tag", forged),
            ("the server's direction", as_snapshot),
            ("no tag", good[..good.len() - DATAGRAM_TAG_BYTES].to_vec()),
            ("shorter than an id and a tag", good[..15].to_vec()),
            (
                "garbage in place of messages",
                signed(&id, &other, &[0xff; 40]),
            ),
        ];
        for at in 0..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x20;
            cases.push(("a byte flipped", flipped));
        }
        for (name, bytes) in cases {
            assert!(
                matches!(
                    decode_datagram(&bytes, &mac),
                    Err(DatagramError::Unauthentic)
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn a_signed_datagram_that_is_not_one_to_four_inputs_or_acks_is_malformed() {
        let id = DatagramId([3; DATAGRAM_ID_BYTES]);
        let mac = DatagramMac::new(&DatagramKey([7; DATAGRAM_KEY_BYTES]));
        let ack = client_bytes(&ClientMsg::Ack(Tick(1)));
        assert!(
            decode_datagram(&signed(&id, &mac, &ack.repeat(MAX_DATAGRAM_MESSAGES)), &mac).is_ok()
        );
        let mut truncated = client_bytes(&ClientMsg::Input(InputCmd {
            seq: 70_000,
            ..InputCmd::default()
        }));
        truncated.pop();
        let limit = MAX_CLIENT_DATAGRAM - DATAGRAM_ID_BYTES - DATAGRAM_TAG_BYTES;
        for (name, body) in [
            ("no message", Vec::new()),
            ("five messages", ack.repeat(MAX_DATAGRAM_MESSAGES + 1)),
            ("a leave", client_bytes(&ClientMsg::Leave)),
            ("a message cut short", truncated),
            (
                "over the size limit",
                [ack.clone(), vec![0; limit]].concat(),
            ),
        ] {
            assert!(
                matches!(
                    decode_datagram(&signed(&id, &mac, &body), &mac),
                    Err(DatagramError::Malformed(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn a_snapshot_datagram_opens_only_with_its_key_in_its_direction() {
        let mac = DatagramMac::new(&DatagramKey([7; DATAGRAM_KEY_BYTES]));
        let other = DatagramMac::new(&DatagramKey([8; DATAGRAM_KEY_BYTES]));
        let snapshot = server_bytes(&ServerMsg::Snapshot(SnapshotMsg::default()));
        let mut datagram = snapshot.clone();
        mac.seal_snapshot(&mut datagram);
        assert_eq!(datagram.len(), snapshot.len() + DATAGRAM_TAG_BYTES);
        assert_eq!(mac.open_snapshot(&datagram), Some(&snapshot[..]));
        assert_eq!(other.open_snapshot(&datagram), None);
        let mut flipped = datagram.clone();
        flipped[0] ^= 1;
        assert_eq!(mac.open_snapshot(&flipped), None);
        // A client's datagram of the same bytes is not a server's.
        let mut to_server = snapshot.clone();
        mac.seal_client(&mut to_server);
        assert_eq!(mac.open_snapshot(&to_server), None);
        assert_eq!(mac.open_snapshot(&[0; 4]), None);
    }

    #[test]
    fn client_messages_round_trip() {
        let msgs = [
            hello("ana"),
            ClientMsg::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                name: String::new(),
                room: RoomRequest::Named("duel-7".into()),
                auth: Some(AuthToken("alice.1700000000.abcd".into())),
                resume: Some(SessionToken([0xa5; 16])),
            }),
            ClientMsg::Leave,
            ClientMsg::Input(InputCmd {
                seq: 7,
                tick: Tick(1234),
                ack: Tick(1232),
                buttons: 0b1_0101,
                aim: 40_000,
            }),
            ClientMsg::Ack(Tick(u32::MAX)),
            ClientMsg::Ping(u64::MAX),
        ];
        for msg in msgs {
            assert_eq!(decode_client(&client_bytes(&msg)), Ok(msg));
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = [
            ServerMsg::Welcome(Welcome {
                protocol: PROTOCOL_VERSION,
                player_id: 3,
                tick_hz: 30,
                snapshot_hz: 30,
                tick: Tick(99),
                room: "public-1".into(),
                session: SessionToken([7; 16]),
                resumed: true,
                input_seq: 1234,
                resume_grace_ms: 10_000,
            }),
            ServerMsg::Pong {
                nonce: 5,
                tick: Tick(6),
            },
            ServerMsg::Disconnect(DisconnectReason::VersionMismatch {
                server: 1,
                client: 2,
            }),
        ];
        for msg in msgs {
            assert_eq!(decode_server(&server_bytes(&msg)), Ok(msg));
        }
    }

    #[test]
    fn borrowed_snapshot_encoding_matches_owned() {
        let snap = SnapshotMsg {
            tick: Tick(10),
            base_age: 2,
            input_ack: 9,
            checksum: 0xdead_beef,
            removed: vec![4, 0],
            created: vec![EntityCreate {
                gap: 7,
                kind: EntityKind::Projectile,
                x: 100,
                y: -100,
                vx: 96,
                vy: 0,
                angle: 3,
                hp: 1,
            }],
            changed: vec![0x11, 0x02],
            values: vec![1, -1, 5, 5],
            players_removed: vec![],
            players_upserted: vec![PlayerInfo {
                id: 1,
                name: "x".into(),
                score: 2,
                deaths: 0,
            }],
            players_scored: vec![ScoreDelta {
                gap: 3,
                score: 1,
                deaths: -1,
            }],
        };
        let mut borrowed = Vec::new();
        encode_snapshot(&snap, &mut borrowed);
        let owned = server_bytes(&ServerMsg::Snapshot(snap.clone()));
        assert_eq!(borrowed, owned);
        assert_eq!(decode_server(&borrowed), Ok(ServerMsg::Snapshot(snap)));
    }

    /// The entity section's length prefix is written after the section, in
    /// place: 1, 3 or 5 bytes, each moving the section differently.
    #[test]
    fn entity_sections_of_every_length_prefix_encode_like_serde() {
        // A zero value is 3 bits; 3 zero counts are 15.
        // Sections of 2, 229, 267, 65,256 and 65,556 bytes.
        for values in [0, 600, 700, 174_000, 174_800] {
            let snap = SnapshotMsg {
                tick: Tick(3),
                players_scored: vec![ScoreDelta::default()],
                values: vec![0; values],
                ..SnapshotMsg::default()
            };
            let mut borrowed = Vec::new();
            encode_snapshot(&snap, &mut borrowed);
            assert_eq!(
                borrowed,
                server_bytes(&ServerMsg::Snapshot(snap.clone())),
                "{values} values"
            );
            assert_eq!(decode_server(&borrowed), Ok(ServerMsg::Snapshot(snap)));
        }
    }

    #[test]
    fn reason_index_is_its_wire_variant_and_labels_match() {
        let every = DisconnectReason::every();
        assert_eq!(every.len(), DisconnectReason::LABELS.len());
        for (i, r) in every.iter().enumerate() {
            // ServerMsg::Disconnect is variant 3, then the reason's variant.
            let bytes = server_bytes(&ServerMsg::Disconnect(r.clone()));
            assert_eq!((bytes[0], usize::from(bytes[1])), (3, i), "{r:?}");
            assert_eq!(r.index(), i);
            assert_eq!(r.label(), DisconnectReason::LABELS[i]);
        }
    }

    #[test]
    fn small_values_encode_as_single_bytes() {
        // Ack of tick 5: variant 2, then 5.
        assert_eq!(client_bytes(&ClientMsg::Ack(Tick(5))), [2, 5]);
        // Varint thresholds: < 251 is one byte, then 0xfb + u16 LE.
        assert_eq!(client_bytes(&ClientMsg::Ack(Tick(250))), [2, 250]);
        assert_eq!(client_bytes(&ClientMsg::Ack(Tick(251))), [2, 0xfb, 251, 0]);
    }

    #[test]
    fn forged_string_length_is_rejected_without_allocating() {
        // Hello, protocol 1, name length u64::MAX (0xfd + 8 bytes).
        let mut bytes = vec![0, 1, 0xfd];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_client(&bytes).is_err());
        // A length just over the limit, with the bytes absent.
        let mut bytes = vec![0, 1, 0xfb];
        bytes.extend_from_slice(&2000u16.to_le_bytes());
        assert_eq!(
            decode_client(&bytes),
            Err(CodecError::TooLarge {
                limit: MAX_CLIENT_MESSAGE
            })
        );
    }

    #[test]
    fn forged_vector_length_in_snapshot_fails_fast() {
        // Snapshot variant, tick, base_age, ack, checksum, then `removed`
        // claiming 2^40 entries that are not there. serde preallocates at most
        // 1 MiB for a claimed length, and decoding stops at the end of input.
        let mut bytes = vec![1, 1, 0, 0, 0, 0xfd];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode_server(&bytes),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let bytes = vec![0u8; MAX_CLIENT_MESSAGE + 1];
        assert_eq!(
            decode_client(&bytes),
            Err(CodecError::TooLarge {
                limit: MAX_CLIENT_MESSAGE
            })
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_variants_are_errors() {
        let mut bytes = client_bytes(&ClientMsg::Ping(1));
        bytes.push(0);
        assert_eq!(decode_client(&bytes), Err(CodecError::TrailingBytes(1)));
        assert!(matches!(decode_client(&[9]), Err(CodecError::Malformed(_))));
        assert!(matches!(decode_client(&[]), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn hello_version_is_readable_from_a_future_hello() {
        let mut bytes = client_bytes(&ClientMsg::Hello(Hello {
            protocol: 77,
            name: "n".into(),
            room: RoomRequest::Matchmake,
            auth: None,
            resume: None,
        }));
        bytes.extend_from_slice(&[1, 2, 3]); // fields a future version added
        assert!(decode_client(&bytes).is_err());
        assert_eq!(peek_hello_version(&bytes), Some(77));
        assert_eq!(peek_hello_version(&client_bytes(&ClientMsg::Ping(1))), None);
    }

    #[test]
    fn snapshot_header_is_readable_without_decoding_the_rest() {
        let snap = SnapshotMsg {
            tick: Tick(70_000),
            base_age: 3,
            input_ack: 300,
            checksum: 0xdead_beef,
            ..SnapshotMsg::default()
        };
        let bytes = server_bytes(&ServerMsg::Snapshot(snap.clone()));
        // 01, then 70,000 as fc + u32 LE, 3 as one byte, 300 as fb + u16 LE.
        assert_eq!(
            &bytes[..9],
            &[1, 0xfc, 0x70, 0x11, 0x01, 0x00, 3, 0xfb, 0x2c]
        );
        assert_eq!(peek_snapshot_header(&bytes), Some((Tick(70_000), 3, 300)));
        // The rest is not looked at.
        assert_eq!(
            peek_snapshot_header(&bytes[..10]),
            Some((Tick(70_000), 3, 300))
        );
        assert_eq!(peek_snapshot_header(&bytes[..9]), None);
        assert_eq!(peek_snapshot_header(&[]), None);
        // Each client's spliced copy carries its own ack.
        let mut out = Vec::new();
        SharedSnapshot::new(&snap).write_for(7, &mut out);
        assert_eq!(peek_snapshot_header(&out), Some((Tick(70_000), 3, 7)));
        // Other messages are not snapshots, even when they are long enough.
        let pong = server_bytes(&ServerMsg::Pong {
            nonce: 1 << 40,
            tick: Tick(5),
        });
        assert_eq!(peek_snapshot_header(&pong), None);
        let welcome = server_bytes(&ServerMsg::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            player_id: 1,
            tick_hz: 30,
            snapshot_hz: 30,
            tick: Tick(9),
            room: "public-1".into(),
            session: SessionToken([0; 16]),
            resumed: false,
            input_seq: 0,
            resume_grace_ms: 0,
        }));
        assert_eq!(peek_snapshot_header(&welcome), None);
        // Tags bincode refuses for a u32 (u64 and u128 widths, 255).
        for tag in [0xfd, 0xfe, 0xff] {
            let forged = [1, tag, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            assert_eq!(peek_snapshot_header(&forged), None, "tag {tag:#x}");
        }
    }

    fn arb_kind() -> impl Strategy<Value = EntityKind> {
        prop_oneof![
            Just(EntityKind::Player),
            Just(EntityKind::Npc),
            Just(EntityKind::Projectile)
        ]
    }

    /// Integers spread over every varint width, edges included.
    fn arb_u32() -> impl Strategy<Value = u32> {
        prop_oneof![
            0..300u32,
            250..252u32,
            65_530..65_540u32,
            any::<u32>(),
            Just(u32::MAX)
        ]
    }

    fn arb_i32() -> impl Strategy<Value = i32> {
        prop_oneof![-300..300i32, any::<i32>(), Just(i32::MIN), Just(i32::MAX)]
    }

    fn arb_snapshot() -> impl Strategy<Value = SnapshotMsg> {
        let create = (
            arb_u32(),
            arb_kind(),
            (arb_i32(), arb_i32(), arb_i32(), arb_i32()),
            any::<u8>(),
            any::<u8>(),
        )
            .prop_map(|(gap, kind, (x, y, vx, vy), angle, hp)| EntityCreate {
                gap,
                kind,
                x,
                y,
                vx,
                vy,
                angle,
                hp,
            });
        let player =
            (arb_u32(), ".{0,20}", arb_u32(), arb_u32()).prop_map(|(id, name, score, deaths)| {
                PlayerInfo {
                    id,
                    name: name.into(),
                    score,
                    deaths,
                }
            });
        let list = |s| proptest::collection::vec(s, 0..8);
        (
            (arb_u32(), arb_u32(), arb_u32(), arb_u32()),
            list(arb_u32()),
            proptest::collection::vec(create, 0..8),
            list(arb_u32()),
            proptest::collection::vec(arb_i32(), 0..300),
            list(arb_u32()),
            proptest::collection::vec(player, 0..4),
            proptest::collection::vec(
                (arb_u32(), arb_i32(), arb_i32()).prop_map(|(gap, score, deaths)| ScoreDelta {
                    gap,
                    score,
                    deaths,
                }),
                0..4,
            ),
        )
            .prop_map(
                |(
                    (tick, base_age, input_ack, checksum),
                    removed,
                    created,
                    changed,
                    values,
                    players_removed,
                    players_upserted,
                    players_scored,
                )| SnapshotMsg {
                    tick: Tick(tick),
                    base_age,
                    input_ack,
                    checksum,
                    removed,
                    created,
                    changed,
                    values,
                    players_removed,
                    players_upserted,
                    players_scored,
                },
            )
    }

    proptest! {
        #[test]
        fn snapshot_encoder_writes_bincodes_exact_bytes(snap in arb_snapshot()) {
            let mut fast = vec![0xaa; 3]; // stale content must be cleared
            encode_snapshot(&snap, &mut fast);
            let mut reference = Vec::new();
            encode_into(&ServerMsgRef::Snapshot(&snap), &mut reference);
            prop_assert_eq!(&fast, &reference);
            prop_assert_eq!(decode_server(&fast), Ok(ServerMsg::Snapshot(snap)));
        }

        #[test]
        fn shared_snapshot_gives_each_client_its_own_bytes(
            snap in arb_snapshot(),
            acks in proptest::collection::vec(arb_u32(), 1..4),
        ) {
            let shared = SharedSnapshot::new(&snap);
            let mut out = vec![1, 2, 3];
            for ack in acks {
                shared.write_for(ack, &mut out);
                let mut own = Vec::new();
                encode_snapshot(&SnapshotMsg { input_ack: ack, ..snap.clone() }, &mut own);
                prop_assert_eq!(&out, &own);
                prop_assert_eq!(shared.len_for(ack), own.len());
            }
        }

        #[test]
        fn snapshot_header_peek_agrees_with_the_full_decoder(
            snap in arb_snapshot(),
            ack in arb_u32(),
        ) {
            let mut bytes = Vec::new();
            SharedSnapshot::new(&snap).write_for(ack, &mut bytes);
            prop_assert_eq!(
                peek_snapshot_header(&bytes),
                Some((snap.tick, snap.base_age, ack))
            );
        }

        #[test]
        fn snapshot_header_peek_never_contradicts_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            // Whenever the full decoder reads a snapshot, the peek reads the
            // same header; whenever the peek fails, so does the decoder.
            let peeked = peek_snapshot_header(&bytes);
            match decode_server(&bytes) {
                Ok(ServerMsg::Snapshot(s)) => {
                    prop_assert_eq!(peeked, Some((s.tick, s.base_age, s.input_ack)));
                }
                Ok(_) => prop_assert_eq!(peeked, None),
                Err(_) => {}
            }
        }

        #[test]
        fn any_input_round_trips(seq: u32, tick: u32, ack: u32, buttons: u8, aim: u16) {
            let msg = ClientMsg::Input(InputCmd { seq, tick: Tick(tick), ack: Tick(ack), buttons, aim });
            prop_assert_eq!(decode_client(&client_bytes(&msg)), Ok(msg));
        }

        #[test]
        fn any_name_round_trips_or_is_refused_by_size(name in ".{0,300}") {
            let msg = hello(&name);
            let bytes = client_bytes(&msg);
            match decode_client(&bytes) {
                Ok(back) => prop_assert_eq!(back, msg),
                Err(e) => prop_assert_eq!(e, CodecError::TooLarge { limit: MAX_CLIENT_MESSAGE }),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
            let _ = peek_hello_version(&bytes);
        }
    }
}
