//! Any bytes given as a source index: read or refused with an error, never a panic; and
//! every lookup in what was read answers. Seed the corpus with an index of the fixtures
//! (`SourceIndex::build` over `tests/fixtures`, then `to_bytes`).
#![no_main]

use analyzer::source::SourceIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = SourceIndex::from_bytes(data) {
        for name in ["", "a", "kernel_clone", "zzzz"] {
            let _ = index.files_with(name);
        }
        let _ = index.to_bytes();
    }
});
