//! Any bytes given as a kernel image: the function table and DWARF readers answer `Ok` or
//! `Err`, never panic. Seed the corpus with the fixtures' vmlinux and objects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = analyzer::symbols::read_functions("fuzz", data);
    if let Ok(index) = analyzer::dwarf::read_dwarf("fuzz", data) {
        for line in index.lines.iter().take(16) {
            let path = &index.files[line.file as usize];
            let _ = index.code_for_line(path, line.line);
        }
    }
});
