//! Any bytes given as a kernel image: the index builder (symbol table, DWARF, the
//! tables made of them) answers `Ok` or `Err`, never panics, and what it builds survives
//! its on-disk encoding unchanged. Seed the corpus with the fixtures' vmlinux and objects.
#![no_main]

use analyzer::index::{KernelIndex, ObjectIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = ObjectIndex::build("fuzz", data, &|_| {}) {
        for file in 0..object.files.len().min(16) {
            let _ = object.places_in_file(&object.files[file]);
        }
        let index = KernelIndex {
            objects: vec![object],
        };
        let read = KernelIndex::from_bytes(&index.to_bytes()).expect("an index reads back");
        assert_eq!(read, index);
    }
});
