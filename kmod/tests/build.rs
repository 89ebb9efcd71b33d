//! Generating and building a livepatch module against the Debian 6.1 headers
//! (`cargo xtask test` installs linux-headers-6.1.0-56-amd64).

use kmod::klp::KlpFunc;
use kmod::module::{self, KernelDir, ModuleSpec};
use std::path::Path;
use std::time::Duration;

pub const KDIR: &str = "/usr/src/linux-headers-6.1.0-56-amd64";

pub const CMDLINE_REPLACEMENT: &str = r#"// The replacement of fs/proc/cmdline.c's cmdline_proc_show().
#include <linux/seq_file.h>

int livepatch_cmdline_proc_show(struct seq_file *m, void *v);
int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", "graftbench live patch active");
	return 0;
}
"#;

fn spec(name: &str) -> ModuleSpec {
    ModuleSpec {
        name: name.to_owned(),
        replacements: vec!["vmlinux:cmdline_proc_show=livepatch_cmdline_proc_show"
            .parse::<KlpFunc>()
            .unwrap()],
        cumulative: false,
        c_source: CMDLINE_REPLACEMENT.to_owned(),
        keys: vec![("revision".into(), "0123abcd".into())],
        klp_symbols: Vec::new(),
    }
}

#[test]
fn a_module_builds_with_rust_scaffolding_and_says_what_it_is() {
    let kernel = KernelDir::new(Path::new(KDIR)).expect("headers");
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(300);
    // Two objects: vmlinux and a module, a clone with its sympos.
    let mut spec = spec("gb_cmdline");
    spec.c_source
        .push_str("int lp_verdict(void);\nint lp_verdict(void) { return 0; }\n");
    spec.replacements.push(
        "nf_tables:nft_verdict_init.isra.0,2=lp_verdict"
            .parse()
            .unwrap(),
    );
    module::generate(dir.path(), &spec, &kernel, limit).expect("generate");
    let scaffold = std::fs::read_to_string(dir.path().join("scaffold.rs")).unwrap();
    assert!(scaffold.contains("#![no_std]"));
    assert!(scaffold.contains("offset_of!(KlpFunc, new_func) == layout::KLP_FUNC_NEW_FUNC"));
    let ko = module::build(dir.path(), &kernel, limit).unwrap_or_else(|e| panic!("{e}"));
    let info = kmod::modinfo::read(&std::fs::read(&ko).unwrap()).expect("modinfo");
    assert_eq!(info.name.as_deref(), Some("gb_cmdline"));
    assert!(info.livepatch);
    assert_eq!(info.license.as_deref(), Some("GPL"));
    assert!(
        info.vermagic
            .as_deref()
            .unwrap_or("")
            .starts_with("6.1.0-56-amd64 "),
        "{:?}",
        info.vermagic
    );
    assert!(info
        .keys
        .contains(&("graftbench.revision".to_owned(), "0123abcd".to_owned())));
    // What it replaces, read back from the klp descriptors in the built module.
    let replaced: Vec<(String, String, u32, String)> = info
        .replaces
        .into_iter()
        .map(|r| (r.object, r.old_name, r.old_sympos, r.new_name))
        .collect();
    assert_eq!(
        replaced,
        [
            (
                "vmlinux".to_owned(),
                "cmdline_proc_show".to_owned(),
                0,
                "livepatch_cmdline_proc_show".to_owned()
            ),
            (
                "nf_tables".to_owned(),
                "nft_verdict_init.isra.0".to_owned(),
                2,
                "lp_verdict".to_owned()
            ),
        ]
    );
}

#[test]
fn a_layout_mismatch_fails_the_build_not_the_kernel() {
    let kernel = KernelDir::new(Path::new(KDIR)).expect("headers");
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(300);
    module::generate(dir.path(), &spec("gb_mismatch"), &kernel, limit).expect("generate");
    // As if the scaffolding had been generated for a kernel whose klp_func is 8 bytes
    // larger.
    let path = dir.path().join("scaffold.rs");
    let scaffold = std::fs::read_to_string(&path).unwrap();
    let tail = scaffold.find("_tail: [u8; ").expect("a tail");
    let patched = format!(
        "{}_tail: [u8; 8 + {}",
        &scaffold[..tail],
        &scaffold[tail + "_tail: [u8; ".len()..]
    );
    std::fs::write(&path, patched).unwrap();
    let error = module::build(dir.path(), &kernel, limit)
        .unwrap_err()
        .to_string();
    assert!(error.contains("rustc"), "{error}");
    assert!(error.contains("has another size on this kernel"), "{error}");
}

#[test]
fn missing_headers_and_bad_specs_are_named() {
    let error = KernelDir::new(Path::new("/nonexistent/headers")).unwrap_err();
    assert!(error.to_string().contains("install the headers"), "{error}");
    let kernel = KernelDir::new(Path::new(KDIR)).expect("headers");
    let dir = tempfile::tempdir().unwrap();
    let mut bad = spec("gb-bad name");
    let error = module::generate(dir.path(), &bad, &kernel, Duration::from_secs(60)).unwrap_err();
    assert!(error.to_string().contains("module name"), "{error}");
    bad.name = "gb_ok".into();
    bad.c_source = "int other(void) { return 0; }".into();
    let error = module::generate(dir.path(), &bad, &kernel, Duration::from_secs(60)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("livepatch_cmdline_proc_show is not defined"),
        "{error}"
    );
    // A C error is reported with its file and line.
    bad.c_source =
        format!("{CMDLINE_REPLACEMENT}\nint broken(void) {{ return undefined_thing; }}\n");
    module::generate(dir.path(), &bad, &kernel, Duration::from_secs(60)).expect("generate");
    let error = module::build(dir.path(), &kernel, Duration::from_secs(300))
        .unwrap_err()
        .to_string();
    assert!(error.contains("replacement.c:11:"), "{error}");
}

#[test]
fn symbols_the_kernel_does_not_export_become_livepatch_relocations() {
    let kernel = KernelDir::new(Path::new(KDIR)).expect("headers");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("gb_unexported");
    // saved_command_line is what the original cmdline_proc_show prints; vmlinux does
    // not export it.
    spec.c_source = "#include <linux/seq_file.h>\n\
                     extern char *saved_command_line;\n\
                     int livepatch_cmdline_proc_show(struct seq_file *m, void *v);\n\
                     int livepatch_cmdline_proc_show(struct seq_file *m, void *v)\n\
                     { seq_printf(m, \"%s\\n\", saved_command_line); return 0; }\n"
        .into();
    let limit = Duration::from_secs(300);
    module::generate(dir.path(), &spec, &kernel, limit).expect("generate");
    let ko = module::build(dir.path(), &kernel, limit).unwrap_or_else(|e| panic!("{e}"));
    let elf = std::process::Command::new("readelf")
        .args(["-SsW"])
        .arg(&ko)
        .output()
        .unwrap();
    let elf = String::from_utf8_lossy(&elf.stdout);
    // The relocation section livepatch applies, SHF_ALLOC + SHF_RELA_LIVEPATCH ("AIo"),
    // and the symbol it resolves, SHN_LIVEPATCH (0xff20).
    let section = elf
        .lines()
        .find(|l| l.contains(".klp.rela.vmlinux.text"))
        .unwrap_or_else(|| panic!("no .klp.rela section:\n{elf}"));
    assert!(section.contains(" AIo "), "{section}");
    let symbol = elf
        .lines()
        .find(|l| l.contains(".klp.sym.vmlinux.saved_command_line,0"))
        .unwrap_or_else(|| panic!("no klp symbol:\n{elf}"));
    assert!(
        symbol.contains("LIVEPATCH") || symbol.contains("ff20"),
        "{symbol}"
    );

    // A patch of two objects cannot guess where the symbol is: it must be told.
    let mut two = spec.clone();
    two.name = "gb_unexported_two".into();
    two.c_source
        .push_str("int lp_verdict(void);\nint lp_verdict(void) { return 0; }\n");
    two.replacements
        .push("nf_tables:nft_verdict_init=lp_verdict".parse().unwrap());
    let dir_two = tempfile::tempdir().unwrap();
    module::generate(dir_two.path(), &two, &kernel, limit).expect("generate");
    let error = module::build(dir_two.path(), &kernel, limit).unwrap_err();
    assert!(
        matches!(&error, kmod::ModuleError::Unexported { symbols, .. } if symbols == &["saved_command_line"]),
        "{error}"
    );
    assert!(error.to_string().contains("--klp-symbol"), "{error}");
    two.klp_symbols = vec![kmod::klp::KlpSymbol {
        name: "saved_command_line".into(),
        object: "vmlinux".into(),
        sympos: 0,
    }];
    module::generate(dir_two.path(), &two, &kernel, limit).expect("generate");
    module::build(dir_two.path(), &kernel, limit).unwrap_or_else(|e| panic!("{e}"));
}
