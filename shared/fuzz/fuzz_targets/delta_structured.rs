//! The delta codec from structured input: a baseline, an evolution of it
//! (`diff` then `apply` must rebuild it exactly) and a free-form delta against
//! it (`apply` must refuse it or produce a valid world). Reaches deep merge
//! states that raw bytes rarely do. See `shared_fuzz::delta_structured`.
#![no_main]

libfuzzer_sys::fuzz_target!(|case: shared_fuzz::DeltaCase| {
    shared_fuzz::delta_structured(&case);
});
