//! Debug information read from real gcc output (see `common` for how it is built).
//!
//! Every expectation is what gcc 12 emitted for `tests/fixtures/*.c`, checked against
//! `readelf --debug-dump=info,loc` when the fixtures were written.

mod common;

use analyzer::dwarf::{clone_abi_change, read_dwarf, DwarfError, DwarfIndex, Subprogram};
use common::Build;

fn vmlinux(dwarf: u8) -> DwarfIndex {
    read_dwarf("vmlinux", &Build::compile(dwarf).vmlinux()).expect("readable")
}

/// (inlined function, container, chain, call file name, call line) for every inline site
/// of `origin`, sorted.
fn sites(index: &DwarfIndex, origin: &str) -> Vec<(String, Vec<String>, String, u32)> {
    let name = |die| index.name_of(die).unwrap_or("?").to_owned();
    let mut sites: Vec<_> = index
        .inline_sites
        .iter()
        .filter(|s| index.name_of(s.origin) == Some(origin))
        .map(|s| {
            let file = s.call_file.as_deref().unwrap_or("?");
            let file = file.rsplit('/').next().unwrap_or(file).to_owned();
            (
                name(s.container),
                s.chain.iter().map(|&c| name(c)).collect(),
                file,
                s.call_line,
            )
        })
        .collect();
    sites.sort();
    sites
}

fn concrete<'a>(index: &'a DwarfIndex, name: &str) -> &'a Subprogram {
    index
        .subprograms
        .iter()
        .find(|s| {
            s.abstract_origin.is_some() && !s.ranges.is_empty() && s.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("no concrete instance of {name}"))
}

fn abi_change(index: &DwarfIndex, name: &str) -> Option<String> {
    let clone = concrete(index, name);
    let origin = index.subprogram(clone.abstract_origin.unwrap()).unwrap();
    clone_abi_change(clone, origin)
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn a_header_inline_is_found_in_every_caller_of_both_files() {
    for dwarf in [4, 5] {
        let index = vmlinux(dwarf);
        assert_eq!(
            sites(&index, "bump"),
            [
                (s("count_a"), vec![], s("inline_a.c"), 6),
                (s("count_b"), vec![], s("inline_a.c"), 11),
                (s("count_c"), vec![], s("inline_b.c"), 6),
                (s("pair_a"), vec![s("bump_pair")], s("inlines.h"), 14),
                (s("pair_a"), vec![s("bump_pair")], s("inlines.h"), 14),
            ],
            "DWARF {dwarf}"
        );
        // One abstract instance per compilation unit that used it, both from the header.
        let abstracts: Vec<&Subprogram> = index.abstract_instances("bump").collect();
        assert_eq!(abstracts.len(), 2);
        for bump in abstracts {
            assert!(bump.declared_inline);
            assert!(bump
                .decl_file
                .as_deref()
                .unwrap()
                .ends_with("fixtures/inlines.h"));
            assert_eq!(bump.decl_line, 6);
        }
    }
}

#[test]
fn a_nested_inline_chain_names_each_level() {
    let index = vmlinux(5);
    assert_eq!(
        sites(&index, "bump_pair"),
        [(s("pair_a"), vec![], s("inline_a.c"), 16)]
    );
    let mut nested: Vec<usize> = index
        .inline_sites
        .iter()
        .filter(|site| index.name_of(site.origin) == Some("bump") && !site.chain.is_empty())
        .map(|site| site.ranges.iter().map(|(a, b)| (b - a) as usize).sum())
        .collect();
    nested.sort_unstable();
    // gcc merged the two copies' instructions: the first copy owns no bytes at all
    // (`DW_AT_high_pc 0`), the second four. The first still puts bump() in pair_a,
    // which is why inline sites come from the DIE tree and not from addresses.
    assert_eq!(nested, [0, 4]);
}

#[test]
fn notrace_and_split_functions_show_where_their_code_went() {
    let index = vmlinux(5);
    // raw_add is notrace, and gcc also inlined it: calls_raw holds its code.
    assert_eq!(
        sites(&index, "raw_add"),
        [(s("calls_raw"), vec![], s("clones.c"), 68)]
    );
    // check_slow's cheap test was inlined into its four callers; the rest is the .part clone.
    let check: Vec<String> = sites(&index, "check_slow")
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(
        check,
        ["use_check_a", "use_check_b", "use_check_c", "use_check_d"]
    );
}

#[test]
fn the_cold_part_is_a_range_of_its_function() {
    let index = vmlinux(5);
    let validate = index
        .subprograms
        .iter()
        .find(|s| s.name.as_deref() == Some("validate") && !s.ranges.is_empty())
        .unwrap();
    assert_eq!(
        validate.ranges.len(),
        2,
        "hot and cold ranges: {:x?}",
        validate.ranges
    );
}

#[test]
fn direct_calls_and_tail_calls() {
    let index = vmlinux(5);
    let calls = |caller: &str| -> Vec<(String, bool)> {
        let mut calls: Vec<_> = index
            .call_sites
            .iter()
            .filter(|c| index.name_of(c.caller) == Some(caller))
            .map(|c| {
                (
                    index.name_of(c.callee).unwrap_or("?").to_owned(),
                    c.tail_call,
                )
            })
            .collect();
        calls.sort();
        calls
    };
    assert_eq!(
        calls("use_req"),
        [(s("req_len"), false), (s("req_len"), false)]
    );
    assert_eq!(calls("use_scaled_a"), [(s("scaled"), true)]);
    assert_eq!(
        calls("use_drop"),
        [(s("drop_flags"), false), (s("drop_flags"), false)]
    );
    assert_eq!(
        calls("validate"),
        [(s("report"), false), (s("report"), false)]
    );
    // The call from the inlined part of check_slow into its outlined .part clone.
    let from_inline = index
        .call_sites
        .iter()
        .find(|c| index.name_of(c.caller) == Some("use_check_a"))
        .unwrap();
    assert_eq!(index.name_of(from_inline.callee), Some("check_slow"));
    assert_eq!(
        from_inline.inlined_in.and_then(|o| index.name_of(o)),
        Some("check_slow")
    );
    // The clone's concrete DIE is what the call names.
    assert_eq!(from_inline.callee, concrete(&index, "check_slow").die);
}

#[test]
fn clones_whose_calling_convention_changed() {
    for dwarf in [4, 5] {
        let index = vmlinux(dwarf);
        assert_eq!(
            abi_change(&index, "scaled").as_deref(),
            Some("parameter `scale` was replaced by a constant"),
            "DWARF {dwarf}"
        );
        assert_eq!(
            abi_change(&index, "req_len").as_deref(),
            Some("parameter `r` was removed (IPA-SRA)"),
            "DWARF {dwarf}"
        );
        assert_eq!(
            abi_change(&index, "drop_flags").as_deref(),
            Some("parameter `flags` was removed (IPA-SRA)"),
            "DWARF {dwarf}"
        );
        // Out-of-line copies that kept the declared convention.
        assert_eq!(abi_change(&index, "raw_add"), None, "DWARF {dwarf}");
        assert_eq!(abi_change(&index, "calls_raw"), None, "DWARF {dwarf}");
    }
}

#[test]
fn a_relocatable_module_reads_the_same() {
    let build = Build::compile(5);
    let module = read_dwarf("fixture", &build.module()).expect("readable");
    let linked = read_dwarf("vmlinux", &build.vmlinux()).expect("readable");
    assert_eq!(sites(&module, "bump"), sites(&linked, "bump"));
    assert_eq!(module.units.len(), common::SOURCES.len() - 1);
    assert!(module.units.iter().any(|u| u.name.ends_with("inline_b.c")));
}

#[test]
fn missing_or_broken_debug_info_is_an_error() {
    let stripped = Build::compile(0).vmlinux();
    assert!(matches!(
        read_dwarf("vmlinux", &stripped),
        Err(DwarfError::NoDebugInfo { .. })
    ));
    assert!(matches!(
        read_dwarf("junk", b"\x7fELF garbage"),
        Err(DwarfError::NotElf { .. })
    ));
    // Valid ELF, .debug_info overwritten with noise: an error naming the unit, no panic.
    let mut image = Build::compile(5).vmlinux();
    let (offset, size) = section_range(&image, ".debug_info");
    for (i, byte) in image[offset..offset + size].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let err = read_dwarf("vmlinux", &image).unwrap_err();
    assert!(err.to_string().contains("malformed DWARF"), "{err}");
}

/// File offset and size of a section, read with the system's readelf.
fn section_range(image: &[u8], name: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    std::fs::write(&path, image).unwrap();
    let out = std::process::Command::new("readelf")
        .args(["-S", "-W"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("no {name}"));
    let fields: Vec<&str> = line.split(']').nth(1).unwrap().split_whitespace().collect();
    let offset = usize::from_str_radix(fields[3], 16).unwrap();
    let size = usize::from_str_radix(fields[4], 16).unwrap();
    (offset, size)
}

#[test]
fn a_header_line_maps_to_the_code_generated_from_it() {
    for dwarf in [4, 5] {
        let index = vmlinux(dwarf);
        // inlines.h:8 is bump()'s body: `return v * 2 + 1;`.
        let mut places: Vec<(String, Vec<String>)> = index
            .code_for_line("analyzer/tests/fixtures/inlines.h", 8)
            .into_iter()
            .map(|c| {
                let chain = c
                    .inline_chain
                    .iter()
                    .map(|&o| index.name_of(o).unwrap_or("?").to_owned())
                    .collect();
                (index.name_of(c.container).unwrap_or("?").to_owned(), chain)
            })
            .collect();
        places.sort();
        places.dedup();
        // count_a is not among them: gcc folded `bump(v) + 3` into one `lea` that the
        // line table attributes to the caller's line (inline_a.c:6). Its inlined copy of
        // bump() is still in the DIE tree, so the analysis must add the inline sites of
        // the function whose body holds the line to what the line table finds.
        assert_eq!(
            places,
            [
                (s("count_b"), vec![s("bump")]),
                (s("count_c"), vec![s("bump")]),
                (s("pair_a"), vec![s("bump_pair"), s("bump")]),
            ],
            "DWARF {dwarf}"
        );
        let folded = index.code_for_line("analyzer/tests/fixtures/inline_a.c", 6);
        assert!(folded
            .iter()
            .any(|c| index.name_of(c.container) == Some("count_a")));
        assert!(sites(&index, "bump").iter().any(|site| site.0 == "count_a"));
    }
}

#[test]
fn a_line_of_an_ordinary_function_maps_to_itself() {
    let index = vmlinux(5);
    // clones.c:63 is in validate()'s hot path: `return v * 2;`.
    let places = index.code_for_line("tests/fixtures/clones.c", 63);
    let names: Vec<&str> = places
        .iter()
        .filter_map(|c| index.name_of(c.container))
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|&n| n == "validate"), "{names:?}");
    assert!(places.iter().all(|c| c.inline_chain.is_empty()));
    // A path that is not a whole-component suffix does not match.
    assert!(index.code_for_line("xtures/inlines.h", 8).is_empty());
}
