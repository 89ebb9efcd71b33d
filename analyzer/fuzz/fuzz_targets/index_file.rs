//! Any bytes given as an index file: read as an index or refused with an error, never a
//! panic; and a fix analysed against what was read answers or errs, never panics. Seed
//! the corpus with an index of the fixtures (`graftbench index ... -o`).
#![no_main]

use analyzer::index::KernelIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = KernelIndex::from_bytes(data) {
        let fix = b"--- a/k.c\n+++ b/k.c\n@@ -3 +3 @@\n-a\n+b\n";
        if let Ok(patch) = analyzer::patch::parse(fix) {
            let _ = analyzer::impact::analyze(&patch, &index);
        }
        for object in &index.objects {
            for file in object.files.iter().take(16) {
                let _ = object.places_in_file(file);
            }
        }
    }
});
