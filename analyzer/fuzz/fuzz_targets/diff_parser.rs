//! Any bytes given as a fix: the parser answers `Ok` or `Err`, never panics, and what it
//! accepts is consistent (line numbers follow the hunk headers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(patch) = analyzer::patch::parse(data) {
        for hunk in patch.files.iter().flat_map(|f| &f.hunks) {
            let old = hunk.lines.iter().filter(|l| l.old_line.is_some()).count();
            let new = hunk.lines.iter().filter(|l| l.new_line.is_some()).count();
            assert_eq!(old as u64, u64::from(hunk.old_lines));
            assert_eq!(new as u64, u64::from(hunk.new_lines));
        }
        let _ = analyzer::impact::changed_lines(&patch);
    }
});
