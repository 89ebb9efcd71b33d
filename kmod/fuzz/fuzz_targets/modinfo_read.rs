//! Any bytes given as a kernel module (`graftbench module info`, an uploaded `.ko`): read
//! or refused with an error, never a panic, and what is read is consistent. Seed corpus:
//! `fuzz/corpus/modinfo_read/` (a livepatch module object, signed and unsigned).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = kmod::modinfo::read(data) {
        // The digest is of the bytes given; every replaced function names its object.
        assert_eq!(info.sha256.len(), 64);
        for function in &info.replaces {
            let _ = function.to_string();
        }
    }
});
