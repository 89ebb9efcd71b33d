//! Any bytes given as a signed module: the appended signature is inspected or refused
//! with an error, never a panic; stripping agrees with inspecting. Seed corpus:
//! `fuzz/corpus/signature_inspect/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let inspected = kmod::signature::inspect(data);
    let stripped = kmod::signature::strip(data);
    if inspected.is_ok() {
        // A signature that can be inspected can be stripped, leaving fewer bytes.
        let body = stripped.expect("an inspected signature strips");
        assert!(body.len() < data.len());
    }
});
