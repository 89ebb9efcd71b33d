//! Any bytes as the target's source file, and the first line of the input as a hunk's
//! removed line: mapping the fix onto it and following what it changes (the C scan of
//! the file, its conditionals resolved with a configuration) answer or err, never panic,
//! and take time linear in the input.
#![no_main]

use analyzer::impact::{analyze_on, TargetSource};
use analyzer::index::KernelIndex;
use analyzer::source::{KernelConfig, SourceError, SourceTree};
use libfuzzer_sys::fuzz_target;

/// A tree of one file, `k.c`.
struct OneFile<'a>(&'a [u8]);

impl SourceTree for OneFile<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        Ok((path == "k.c").then(|| self.0.to_vec()))
    }
}

fuzz_target!(|data: &[u8]| {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut fix = b"--- a/k.c\n+++ b/k.c\n@@ -2,1 +2,1 @@\n-".to_vec();
    fix.extend_from_slice(first);
    fix.extend_from_slice(b"\n+changed\n");
    let Ok(patch) = analyzer::patch::parse(&fix) else {
        return;
    };
    let empty = KernelIndex {
        objects: Vec::new(),
    };
    let tree = OneFile(data);
    let config = KernelConfig::parse(b"CONFIG_A=y\nCONFIG_B=m\nCONFIG_N=12\n# CONFIG_C is not set\n")
        .expect("a configuration");
    for config in [None, Some(&config)] {
        let _ = analyze_on(
            &patch,
            &empty,
            Some(TargetSource {
                tree: &tree,
                index: None,
                config,
            }),
        );
    }
});
