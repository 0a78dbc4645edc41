//! Property tests of the byte format (`shared::codec`), beyond the unit tests
//! in `codec.rs`: every message of both directions, the exact decode budget,
//! truncation, trailing bytes, the hello peek, and the varint rules that
//! `PROTOCOL.md` section 2 states. The fuzz targets in `shared/fuzz` explore
//! the same decoders from raw bytes; these pin the contract they check.

use proptest::prelude::*;
use shared::Tick;
use shared::codec::{
    CodecError, MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE, client_bytes, decode_client, decode_server,
    encode_client, encode_snapshot, peek_hello_version, server_bytes,
};
use shared::protocol::{
    AuthToken, ClientMsg, DisconnectReason, Hello, InputCmd, RoomRequest, SESSION_TOKEN_BYTES,
    ServerMsg, SessionToken, Welcome,
};
use shared::snapshot::{EntityCreate, EntityKind, PlayerInfo, ScoreDelta, SnapshotMsg};

/// Longest hello name, in UTF-8 bytes, that fits the client decode budget
/// with matchmaking and no tokens (PROTOCOL.md section 1: 1024 - 4 variant -
/// 4 protocol - 8 length - 4 room variant - 1 and 1 option tags).
const MAX_HELLO_NAME_BYTES: usize = 1002;

/// Bytes of a `u32`/`u64` varint (PROTOCOL.md section 2.2).
fn varint_len(v: u64) -> usize {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn arb_room() -> impl Strategy<Value = RoomRequest> {
    prop_oneof![
        Just(RoomRequest::Matchmake),
        "[A-Za-z0-9_-]{0,40}".prop_map(RoomRequest::Named),
    ]
}

fn arb_hello() -> impl Strategy<Value = Hello> {
    (
        any::<u32>(),
        ".{0,40}",
        arb_room(),
        proptest::option::of(".{0,80}".prop_map(AuthToken)),
        proptest::option::of(any::<[u8; SESSION_TOKEN_BYTES]>().prop_map(SessionToken)),
    )
        .prop_map(|(protocol, name, room, auth, resume)| Hello {
            protocol,
            name,
            room,
            auth,
            resume,
        })
}

fn arb_client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        arb_hello().prop_map(ClientMsg::Hello),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>()
        )
            .prop_map(|(seq, tick, ack, buttons, aim)| ClientMsg::Input(InputCmd {
                seq,
                tick: Tick(tick),
                ack: Tick(ack),
                buttons,
                aim,
            })),
        any::<u32>().prop_map(|t| ClientMsg::Ack(Tick(t))),
        any::<u64>().prop_map(ClientMsg::Ping),
        Just(ClientMsg::Leave),
    ]
}

fn arb_kind() -> impl Strategy<Value = EntityKind> {
    prop_oneof![
        Just(EntityKind::Player),
        Just(EntityKind::Npc),
        Just(EntityKind::Projectile),
    ]
}

fn arb_create() -> impl Strategy<Value = EntityCreate> {
    (
        any::<u32>(),
        arb_kind(),
        any::<[i32; 4]>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(gap, kind, [x, y, vx, vy], angle, hp)| EntityCreate {
            gap,
            kind,
            x,
            y,
            vx,
            vy,
            angle,
            hp,
        })
}

fn arb_player() -> impl Strategy<Value = PlayerInfo> {
    (any::<u32>(), ".{0,20}", any::<u32>(), any::<u32>()).prop_map(|(id, name, score, deaths)| {
        PlayerInfo {
            id,
            name: name.into(),
            score,
            deaths,
        }
    })
}

/// Any snapshot the codec can carry: the lists need not describe a valid
/// delta, the codec does not care.
fn arb_snapshot() -> impl Strategy<Value = SnapshotMsg> {
    use proptest::collection::vec;
    (
        any::<[u32; 4]>(),
        vec(any::<u32>(), 0..8),
        vec(arb_create(), 0..6),
        vec(any::<u32>(), 0..8),
        vec(any::<i32>(), 0..16),
        vec(any::<u32>(), 0..4),
        vec(arb_player(), 0..4),
        vec(any::<(u32, i32, i32)>(), 0..4),
    )
        .prop_map(
            |(
                [tick, base_age, input_ack, checksum],
                removed,
                created,
                changed,
                values,
                players_removed,
                players_upserted,
                scored,
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
                players_scored: scored
                    .into_iter()
                    .map(|(gap, score, deaths)| ScoreDelta { gap, score, deaths })
                    .collect(),
            },
        )
}

fn arb_reason() -> impl Strategy<Value = DisconnectReason> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(server, client)| DisconnectReason::VersionMismatch { server, client }),
        proptest::sample::select(DisconnectReason::every().to_vec()),
    ]
}

fn arb_server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            "[a-z0-9-]{1,32}",
            any::<[u8; SESSION_TOKEN_BYTES]>(),
            any::<bool>(),
            (any::<u32>(), any::<u32>()),
        )
            .prop_map(
                |(
                    protocol,
                    player_id,
                    tick_hz,
                    snapshot_hz,
                    tick,
                    room,
                    session,
                    resumed,
                    (input_seq, resume_grace_ms),
                )| {
                    ServerMsg::Welcome(Welcome {
                        protocol,
                        player_id,
                        tick_hz,
                        snapshot_hz,
                        tick: Tick(tick),
                        room,
                        session: SessionToken(session),
                        resumed,
                        input_seq,
                        resume_grace_ms,
                    })
                },
            ),
        arb_snapshot().prop_map(ServerMsg::Snapshot),
        (any::<u64>(), any::<u32>()).prop_map(|(nonce, tick)| ServerMsg::Pong {
            nonce,
            tick: Tick(tick),
        }),
        arb_reason().prop_map(ServerMsg::Disconnect),
    ]
}

/// `Ack(t)` with `t` written in the given varint tag's width, whether or not
/// that is the shortest form.
fn ack_with_tag(t: u32, tag: u8) -> Vec<u8> {
    let mut bytes = vec![2, tag];
    match tag {
        0xfb => bytes.extend_from_slice(&(t as u16).to_le_bytes()),
        0xfc => bytes.extend_from_slice(&t.to_le_bytes()),
        0xfd => bytes.extend_from_slice(&u64::from(t).to_le_bytes()),
        _ => unreachable!("tags of this test"),
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_client_msg_round_trips_and_reused_buffers_are_cleared(
        msg in arb_client_msg(),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = client_bytes(&msg);
        prop_assert!(bytes.len() <= MAX_CLIENT_MESSAGE);
        prop_assert_eq!(decode_client(&bytes), Ok(msg.clone()));
        let mut reused = junk;
        encode_client(&msg, &mut reused);
        prop_assert_eq!(reused, bytes);
    }

    #[test]
    fn any_server_msg_round_trips(msg in arb_server_msg()) {
        let bytes = server_bytes(&msg);
        prop_assert_eq!(decode_server(&bytes), Ok(msg.clone()));
        if let ServerMsg::Snapshot(s) = &msg {
            let mut borrowed = vec![0xaa; 3];
            encode_snapshot(s, &mut borrowed);
            prop_assert_eq!(borrowed, bytes);
        }
    }

    /// The budget rule of PROTOCOL.md section 1, exactly: a hello name of up
    /// to 1002 UTF-8 bytes is accepted and anything longer is `TooLarge`,
    /// whatever the characters.
    #[test]
    fn hello_name_budget_is_exactly_1002_bytes(
        filler in "[a-zé☃🎮]{0,4}",
        target in 990..1030usize,
        protocol: u32,
    ) {
        let mut name = String::new();
        while name.len() + filler.len().max(1) <= target {
            if filler.is_empty() {
                name.push('x');
            } else {
                name.push_str(&filler);
            }
        }
        let msg = ClientMsg::Hello(Hello {
            protocol,
            name: name.clone(),
            room: RoomRequest::Matchmake,
            auth: None,
            resume: None,
        });
        let decoded = decode_client(&client_bytes(&msg));
        if name.len() <= MAX_HELLO_NAME_BYTES {
            prop_assert_eq!(decoded, Ok(msg));
        } else {
            prop_assert_eq!(decoded, Err(CodecError::TooLarge { limit: MAX_CLIENT_MESSAGE }));
        }
    }

    /// Messages are self-delimiting: no strict prefix of a message decodes.
    #[test]
    fn every_strict_prefix_is_refused(
        client in arb_client_msg(),
        server in arb_server_msg(),
    ) {
        let bytes = client_bytes(&client);
        for end in 0..bytes.len() {
            prop_assert!(decode_client(&bytes[..end]).is_err(), "prefix {} of {:?}", end, client);
        }
        let bytes = server_bytes(&server);
        for end in 0..bytes.len() {
            prop_assert!(decode_server(&bytes[..end]).is_err(), "prefix {} of {:?}", end, server);
        }
    }

    #[test]
    fn appended_bytes_are_counted_as_trailing(
        client in arb_client_msg(),
        server in arb_server_msg(),
        extra in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let mut bytes = client_bytes(&client);
        bytes.extend_from_slice(&extra);
        if bytes.len() <= MAX_CLIENT_MESSAGE {
            prop_assert_eq!(decode_client(&bytes), Err(CodecError::TrailingBytes(extra.len())));
        }
        let mut bytes = server_bytes(&server);
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(decode_server(&bytes), Err(CodecError::TrailingBytes(extra.len())));
    }

    /// The server reads the version of any hello, whatever a future protocol
    /// appended to it, and finds no version in anything else.
    #[test]
    fn peek_reads_the_version_of_any_hello_and_nothing_else(
        msg in arb_client_msg(),
        suffix in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = client_bytes(&msg);
        bytes.extend_from_slice(&suffix);
        let expected = match &msg {
            ClientMsg::Hello(h) => Some(h.protocol),
            _ => None,
        };
        prop_assert_eq!(peek_hello_version(&bytes), expected);
    }

    /// PROTOCOL.md section 2.2: 1, 3, 5 or 9 bytes by value, always the
    /// shortest form; the enum variant index is a one-byte varint here.
    #[test]
    fn varint_sizes_follow_the_protocol(t: u32, nonce: u64, seq: u32, tick: u32, ack: u32, aim: u16) {
        prop_assert_eq!(client_bytes(&ClientMsg::Ack(Tick(t))).len(), 1 + varint_len(t.into()));
        prop_assert_eq!(client_bytes(&ClientMsg::Ping(nonce)).len(), 1 + varint_len(nonce));
        let input = ClientMsg::Input(InputCmd { seq, tick: Tick(tick), ack: Tick(ack), buttons: 0, aim });
        prop_assert_eq!(
            client_bytes(&input).len(),
            1 + varint_len(seq.into())
                + varint_len(tick.into())
                + varint_len(ack.into())
                + 1
                + varint_len(aim.into())
        );
    }

    /// PROTOCOL.md section 2.2: the decoder accepts a longer form than
    /// necessary (re-encoding gives the shortest), and refuses a tag wider
    /// than the field's type.
    #[test]
    fn non_minimal_varints_decode_and_too_wide_tags_do_not(t: u32) {
        if let Ok(short) = u16::try_from(t) {
            let wide = ack_with_tag(u32::from(short), 0xfb);
            prop_assert_eq!(decode_client(&wide), Ok(ClientMsg::Ack(Tick(t))));
        }
        let wide = ack_with_tag(t, 0xfc);
        prop_assert_eq!(decode_client(&wide), Ok(ClientMsg::Ack(Tick(t))));
        prop_assert_eq!(client_bytes(&ClientMsg::Ack(Tick(t))).len(), 1 + varint_len(t.into()));
        prop_assert!(matches!(
            decode_client(&ack_with_tag(t, 0xfd)),
            Err(CodecError::Malformed(_))
        ));
    }

    /// A valid message with one byte changed never panics a decoder, and if
    /// it still decodes, the value re-encodes no longer and round-trips:
    /// what the fuzz targets check, from a structured start.
    #[test]
    fn mutated_messages_never_panic_and_round_trip_if_accepted(
        client in arb_client_msg(),
        server in arb_server_msg(),
        at: prop::sample::Index,
        xor in 1..=255u8,
    ) {
        let mut bytes = client_bytes(&client);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        let _ = peek_hello_version(&bytes);
        if let Ok(msg) = decode_client(&bytes) {
            let again = client_bytes(&msg);
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(decode_client(&again), Ok(msg));
        }
        let mut bytes = server_bytes(&server);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(msg) = decode_server(&bytes) {
            let again = server_bytes(&msg);
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(decode_server(&again), Ok(msg));
        }
    }

    /// A hello whose name length claims more bytes than follow fails, never
    /// panics, and is `TooLarge` when the claim alone exceeds the budget.
    #[test]
    fn forged_name_lengths_fail(claim: u64, present in 0..16usize) {
        let mut bytes = vec![0, 1];
        match claim {
            0..=250 => bytes.push(claim as u8),
            251..=0xffff => {
                bytes.push(0xfb);
                bytes.extend_from_slice(&(claim as u16).to_le_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                bytes.push(0xfc);
                bytes.extend_from_slice(&(claim as u32).to_le_bytes());
            }
            _ => {
                bytes.push(0xfd);
                bytes.extend_from_slice(&claim.to_le_bytes());
            }
        }
        bytes.extend(std::iter::repeat_n(b'a', present));
        let decoded = decode_client(&bytes);
        if claim as usize == present {
            prop_assert!(decoded.is_ok());
        } else if claim > (MAX_CLIENT_MESSAGE - 16) as u64 {
            prop_assert_eq!(decoded, Err(CodecError::TooLarge { limit: MAX_CLIENT_MESSAGE }));
        } else {
            prop_assert!(decoded.is_err());
        }
    }
}

#[test]
fn server_messages_over_16_mib_are_refused_before_parsing() {
    let bytes = vec![0u8; MAX_SERVER_MESSAGE + 1];
    assert_eq!(
        decode_server(&bytes),
        Err(CodecError::TooLarge {
            limit: MAX_SERVER_MESSAGE
        })
    );
}

/// Asserts the decode budget's boundary for one list of a snapshot: `snap`
/// (one list holding as many entries as the budget allows, in a message a
/// third of the byte limit or less) decodes, and with `one_more` entry in
/// that list it is refused as too large.
fn one_more_entry_is_too_large(mut snap: SnapshotMsg, one_more: impl FnOnce(&mut SnapshotMsg)) {
    let bytes = server_bytes(&ServerMsg::Snapshot(snap.clone()));
    assert!(bytes.len() < MAX_SERVER_MESSAGE / 3);
    assert_eq!(decode_server(&bytes), Ok(ServerMsg::Snapshot(snap.clone())));
    one_more(&mut snap);
    let bytes = server_bytes(&ServerMsg::Snapshot(snap));
    assert_eq!(
        decode_server(&bytes),
        Err(CodecError::TooLarge {
            limit: MAX_SERVER_MESSAGE
        })
    );
}

/// PROTOCOL.md section 1: the lists of a snapshot's entity section are
/// charged against a 16 MiB budget of their own, 4 per value. So `values` can
/// hold 16 MiB / 4 entries and one more is refused, although the message is
/// only about 1.5 MiB long (a zero value is 3 bits).
#[test]
fn snapshot_decode_budget_counts_memory_not_wire_bytes() {
    let snap = SnapshotMsg {
        values: vec![0; MAX_SERVER_MESSAGE / 4],
        ..SnapshotMsg::default()
    };
    one_more_entry_is_too_large(snap, |s| s.values.push(0));
}

/// The bincode part of a snapshot is charged its in-memory width
/// (PROTOCOL.md section 1): with nothing else in it, a snapshot can list
/// (16 MiB - 62) / 4 = 4,194,288 removed ids, and one more is refused,
/// although the message is only about 4 MiB (one byte per zero gap). The
/// JavaScript decoder checks the same boundary
/// (`client-demo/js-test/unit/budget.test.mjs`).
#[test]
fn snapshot_removed_ids_are_charged_four_bytes_each() {
    // 4 variant + 16 header + 8 + 8 + 8 + 8 + 8 length prefixes + the
    // empty entity section's 2 bytes.
    let fixed = 4 + 16 + 5 * 8 + 2;
    let max_removed = (MAX_SERVER_MESSAGE - fixed) / 4;
    assert_eq!(max_removed, 4_194_288);
    let snap = SnapshotMsg {
        removed: vec![0; max_removed],
        ..SnapshotMsg::default()
    };
    one_more_entry_is_too_large(snap, |s| s.removed.push(0));
}
