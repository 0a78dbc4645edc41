//! The client's path on server bytes: `decode_server` (and, differentially,
//! the server's snapshot encoders), then `apply` of a
//! snapshot against a fixed real baseline, the same baseline moved to the
//! tick the delta names, and no baseline. See `shared_fuzz::delta`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_fuzz::delta(data));
