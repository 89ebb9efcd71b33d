//! The index of the gcc-built fixtures: what it keeps, that compressed debug sections
//! index the same, and that a damaged index file is refused, never misread.

mod common;

use analyzer::index::{IndexError, KernelIndex, ObjectIndex};
use analyzer::placement::placements;
use common::Build;

fn index_of(image: &[u8]) -> ObjectIndex {
    ObjectIndex::build("vmlinux", image, &|_| {}).expect("index")
}

#[test]
fn compressed_debug_sections_index_the_same() {
    for dwarf in [4, 5] {
        let build = Build::compile(dwarf);
        let plain = index_of(&build.vmlinux());
        for method in ["zlib", "zstd"] {
            let image = build.compressed_vmlinux(method);
            // The section really is compressed (SHF_COMPRESSED).
            let file =
                object::read::elf::ElfFile64::<object::Endianness>::parse(&*image).expect("ELF");
            use object::{Object, ObjectSection, SectionFlags};
            let flags = file
                .section_by_name(".debug_info")
                .expect("debug_info")
                .flags();
            let SectionFlags::Elf { sh_flags, .. } = flags else {
                panic!("{method}: {flags:?}");
            };
            assert!(
                sh_flags.contains(object::elf::SHF_COMPRESSED),
                "{method}: not compressed"
            );
            assert_eq!(index_of(&image), plain, "{method}, DWARF {dwarf}");
        }
    }
}

#[test]
fn the_index_keeps_units_clones_and_their_calling_conventions() {
    let build = Build::compile(5);
    let index = KernelIndex {
        objects: vec![index_of(&build.vmlinux())],
    };
    let req_len = placements(&index, "req_len");
    assert_eq!(req_len.len(), 1);
    let clone = &req_len[0].out_of_line[0];
    assert_eq!(clone.symbol.as_deref(), Some("req_len.isra.0"));
    assert!(clone.unit.ends_with("fixtures/clones.c"), "{}", clone.unit);
    assert!(clone.traceable);
    assert_eq!(
        clone.abi_change.as_deref(),
        Some("parameter `r` was removed (IPA-SRA)")
    );
    // Two static helper()s, one per file, told apart by declaration and sympos.
    let helpers = placements(&index, "helper");
    let found: Vec<(&str, u32)> = helpers
        .iter()
        .map(|p| {
            (
                p.decl_file.rsplit('/').next().unwrap_or_default(),
                p.out_of_line[0].old_sympos,
            )
        })
        .collect();
    assert_eq!(found, [("dup_a.c", 1), ("dup_b.c", 2)]);
}

#[test]
fn every_damaged_byte_is_refused_or_gives_the_same_answer() {
    let build = Build::compile(5);
    let index = KernelIndex {
        objects: vec![index_of(&build.vmlinux())],
    };
    let bytes = index.to_bytes();
    let fix = analyzer::patch::parse(
        b"--- a/analyzer/tests/fixtures/inlines.h\n+++ b/analyzer/tests/fixtures/inlines.h\n@@ -8 +8 @@\n-a\n+b\n",
    )
    .expect("fix");
    let answer = analyzer::impact::analyze(&fix, &index).expect("the undamaged index answers");
    let mut read_anyway = 0;
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= flip;
            match KernelIndex::from_bytes(&damaged) {
                // Every section has a checksum: a damaged file reads only where the
                // damage cannot change an answer, and then it gives the same answer.
                Ok(read) => {
                    read_anyway += 1;
                    assert_eq!(
                        analyzer::impact::analyze(&fix, &read).ok().as_ref(),
                        Some(&answer),
                        "byte {at} ^ {flip:#x} read into a different answer"
                    );
                }
                Err(
                    IndexError::NotAnIndex | IndexError::Version { .. } | IndexError::Damaged(_),
                ) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    assert_eq!(read_anyway, 0, "damaged files that still read");
    for cut in 0..bytes.len() {
        assert!(
            KernelIndex::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn indexing_asked_to_stop_stops_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vmlinux = dir.path().join("vmlinux");
    std::fs::write(&vmlinux, Build::compile(5).vmlinux()).unwrap();
    let build = analyzer::cache::KernelBuild::new(&vmlinux, None).unwrap();
    let out = dir.path().join("index.gbindex");
    let stopped = analyzer::cache::load_until(
        &out,
        &build,
        true,
        analyzer::cache::Objects::All,
        &|_| {},
        &|| true,
    );
    assert!(matches!(stopped, Err(analyzer::cache::CacheError::Stopped)));
    assert!(!out.exists(), "nothing written");
    let (index, _) = analyzer::cache::load_until(
        &out,
        &build,
        true,
        analyzer::cache::Objects::All,
        &|_| {},
        &|| false,
    )
    .expect("not stopped");
    assert_eq!(index.objects.len(), 1);

    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("a.c"), "int a(void) { return 1; }\n").unwrap();
    let stopped = analyzer::source::SourceIndex::build_until(tree.path(), &|_, _| {}, &|| true);
    assert!(matches!(
        stopped,
        Err(analyzer::source::SourceError::Stopped)
    ));
    let built = analyzer::source::SourceIndex::build_until(tree.path(), &|_, _| {}, &|| false)
        .expect("not stopped");
    assert_eq!(built.files(), ["a.c"]);
}
