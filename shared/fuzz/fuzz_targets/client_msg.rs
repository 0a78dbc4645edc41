//! The server's decoder of client bytes: `decode_client` and
//! `peek_hello_version` must never panic, and whatever decodes must survive
//! re-encoding. See `shared_fuzz::client_msg`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_fuzz::client_msg(data));
