//! Livepatch module sources and their build.
//!
//! A module directory holds the C replacement functions (`replacement.c`, from the
//! kernel's own source), the Rust scaffolding (`scaffold.rs`: the `klp_func`,
//! `klp_object` and `klp_patch` descriptors, `init_module`, `cleanup_module` and the
//! `.modinfo` entries, `#![no_std]`), and the `Kbuild` file. The Rust view of the
//! kernel's structs is generated from the target's own layout (offsets and sizes compiled
//! against its headers, asm-offsets style) and checked again at every build with
//! compile-time asserts against the layout of the headers it is built with: a mismatch
//! fails the build instead of crashing a kernel.
//!
//! Building compiles `scaffold.rs` with the stable rustc and the flags kernel code needs,
//! runs the kernel's objtool on it as kbuild does for C, hands it to kbuild as a shipped
//! object, and runs `make -C KDIR M=DIR modules` under a time limit, keeping the log.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One function the module replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// `vmlinux` or the module that holds the function (`klp_object.name`).
    pub object: String,
    /// The function replaced (`klp_func.old_name`), clone suffix included.
    pub old_name: String,
    /// `klp_func.old_sympos`: 0 when the name is unique.
    pub old_sympos: u32,
    /// The replacement function in `replacement.c`.
    pub new_name: String,
}

impl std::str::FromStr for Replacement {
    type Err = ModuleError;

    /// `OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION`, e.g.
    /// `vmlinux:cmdline_proc_show=livepatch_cmdline_proc_show`.
    fn from_str(text: &str) -> Result<Replacement, ModuleError> {
        let bad = || {
            ModuleError::Spec(format!(
            "`{text}`: write OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION, e.g. vmlinux:cmdline_proc_show=livepatch_cmdline_proc_show"
        ))
        };
        let (old, new_name) = text.split_once('=').ok_or_else(bad)?;
        let (object, old) = old.split_once(':').ok_or_else(bad)?;
        let (old_name, old_sympos) = match old.split_once(',') {
            Some((name, pos)) => (name, pos.parse().map_err(|_| bad())?),
            None => (old, 0),
        };
        let symbol_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        let object_ok = !object.is_empty()
            && object
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !object_ok || !symbol_ok(old_name) || !symbol_ok(new_name) || new_name.contains('.') {
            return Err(bad());
        }
        Ok(Replacement {
            object: object.to_owned(),
            old_name: old_name.to_owned(),
            old_sympos,
            new_name: new_name.to_owned(),
        })
    }
}

/// What a module is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// The module name (letters, digits, `_`).
    pub name: String,
    /// The functions it replaces.
    pub replacements: Vec<Replacement>,
    /// A cumulative patch (`klp_patch.replace`): it replaces every livepatch loaded before.
    pub cumulative: bool,
    /// The C source of the replacement functions.
    pub c_source: String,
    /// Graftbench's own `.modinfo` keys (`graftbench.revision=...`), without the prefix.
    pub keys: Vec<(String, String)>,
    /// Where symbols the kernel does not export are (for livepatch relocations). When a
    /// patch replaces functions of one object only, its unexported symbols are looked for
    /// there (position 0) unless listed here.
    pub klp_symbols: Vec<crate::klp::KlpSymbol>,
}

/// Why a module could not be made or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The specification is unusable.
    #[error("{0}")]
    Spec(String),
    /// The kernel build directory is not usable.
    #[error("{0}")]
    Headers(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A build step failed.
    #[error("{step} failed{}:\n{detail}\n(full log: {log})", if .errors.is_empty() { String::new() } else { format!(" at {}", .errors.join("; ")) })]
    Build {
        /// Which step.
        step: String,
        /// `file:line: error: ...` lines found in the output.
        errors: Vec<String>,
        /// The end of the output.
        detail: String,
        /// Where the whole output is.
        log: String,
    },
    /// The replacement code uses kernel symbols that are not exported to modules.
    #[error("the replacement code uses {} that the kernel does not export to modules, in a patch of several objects: {}. Say where each is with --klp-symbol NAME=OBJECT[,SYMPOS] (full log: {log})", if .symbols.len() == 1 { "a symbol" } else { "symbols" }, .symbols.join(", "))]
    Unexported {
        /// The symbols.
        symbols: Vec<String>,
        /// Where the whole output is.
        log: String,
    },
    /// A build step ran past its time limit and was stopped.
    #[error("{step} did not finish within {seconds} s and was stopped (full log: {log})")]
    Timeout {
        /// Which step.
        step: String,
        /// The limit.
        seconds: u64,
        /// Where the output is.
        log: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModuleError + '_ {
    move |source| ModuleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The offsets and sizes the scaffolding needs, read from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `sizeof(struct klp_func)` and the offsets of `old_name`, `new_func`, `old_sympos`.
    pub func: [u64; 4],
    /// `sizeof(struct klp_object)` and the offsets of `name`, `funcs`.
    pub object: [u64; 3],
    /// `sizeof(struct klp_patch)` and the offsets of `mod`, `objs`, `replace`.
    pub patch: [u64; 4],
}

impl Layout {
    /// `func:SIZE:OLD_NAME:NEW_FUNC:OLD_SYMPOS,object:SIZE:NAME:FUNCS,patch:SIZE:MOD:OBJS:REPLACE`.
    pub fn encode(&self) -> String {
        let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(":");
        format!(
            "func:{},object:{},patch:{}",
            join(&self.func),
            join(&self.object),
            join(&self.patch)
        )
    }

    /// Reads [`Layout::encode`]'s form.
    pub fn decode(text: &str) -> Option<Layout> {
        let mut parts = text.split(',');
        let mut numbers = |label: &str, n: usize| -> Option<Vec<u64>> {
            let part = parts.next()?.strip_prefix(label)?.strip_prefix(':')?;
            let v: Vec<u64> = part
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() == n).then_some(v)
        };
        let func = numbers("func", 4)?;
        let object = numbers("object", 3)?;
        let patch = numbers("patch", 4)?;
        Some(Layout {
            func: [func[0], func[1], func[2], func[3]],
            object: [object[0], object[1], object[2]],
            patch: [patch[0], patch[1], patch[2], patch[3]],
        })
    }
}

/// The C file whose assembly output carries the layout, asm-offsets style.
const LAYOUT_C: &str = r#"// Generated by Graftbench: the layout of the livepatch structs on this kernel build.
#include <linux/livepatch.h>
#include <linux/stddef.h>
#define SHOW(sym, val) asm volatile("\n.ascii \"->" #sym " %0\"" : : "i" (val))
void graftbench_layout(void);
void graftbench_layout(void)
{
	SHOW(klp_func_size, sizeof(struct klp_func));
	SHOW(klp_func_old_name, offsetof(struct klp_func, old_name));
	SHOW(klp_func_new_func, offsetof(struct klp_func, new_func));
	SHOW(klp_func_old_sympos, offsetof(struct klp_func, old_sympos));
	SHOW(klp_object_size, sizeof(struct klp_object));
	SHOW(klp_object_name, offsetof(struct klp_object, name));
	SHOW(klp_object_funcs, offsetof(struct klp_object, funcs));
	SHOW(klp_patch_size, sizeof(struct klp_patch));
	SHOW(klp_patch_mod, offsetof(struct klp_patch, mod));
	SHOW(klp_patch_objs, offsetof(struct klp_patch, objs));
	SHOW(klp_patch_replace, offsetof(struct klp_patch, replace));
}
"#;

const LAYOUT_NAMES: [&str; 11] = [
    "klp_func_size",
    "klp_func_old_name",
    "klp_func_new_func",
    "klp_func_old_sympos",
    "klp_object_size",
    "klp_object_name",
    "klp_object_funcs",
    "klp_patch_size",
    "klp_patch_mod",
    "klp_patch_objs",
    "klp_patch_replace",
];

/// A kernel build directory (`/usr/src/linux-headers-VERSION` or a built tree).
#[derive(Debug, Clone)]
pub struct KernelDir {
    path: PathBuf,
    config: String,
}

impl KernelDir {
    /// Checks that `path` is a configured kernel build directory.
    pub fn new(path: &Path) -> Result<KernelDir, ModuleError> {
        // kbuild runs in this directory (`make -C`): every other path it is given must be
        // absolute, and so is this one, whatever the caller's working directory.
        let path = &std::path::absolute(path).map_err(io(path))?;
        let config_path = path.join("include/config/auto.conf");
        if !path.join("Makefile").exists() || !config_path.exists() {
            return Err(ModuleError::Headers(format!(
                "{} is not a configured kernel build directory (no Makefile or include/config/auto.conf): install the headers, e.g. apt-get install linux-headers-$(uname -r)",
                path.display()
            )));
        }
        let config = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        if !config.lines().any(|l| l == "CONFIG_LIVEPATCH=y") {
            return Err(ModuleError::Headers(format!(
                "{} is a kernel without CONFIG_LIVEPATCH: it cannot load livepatch modules",
                path.display()
            )));
        }
        Ok(KernelDir {
            path: path.to_owned(),
            config,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn enabled(&self, option: &str) -> bool {
        self.config.lines().any(|l| l == format!("{option}=y"))
    }

    /// The kernel release the headers are for.
    pub fn release(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("include/config/kernel.release"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Reads the livepatch structs' layout by compiling [`LAYOUT_C`] with kbuild.
    pub fn layout(&self, work: &Path, limit: Duration) -> Result<Layout, ModuleError> {
        // `M=` is resolved by kbuild against the kernel tree: it must be absolute.
        let work = &std::path::absolute(work).map_err(io(work))?;
        let dir = work.join("layout");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write(&dir.join("layout.c"), LAYOUT_C)?;
        write(&dir.join("Kbuild"), "obj-m := layout.o\n")?;
        let log = work.join("layout.log");
        run_logged(
            Command::new("make")
                .arg("-C")
                .arg(&self.path)
                .arg(format!("M={}", dir.display()))
                .arg("layout.s"),
            "compiling the layout probe against the headers",
            &log,
            limit,
        )?;
        let assembly = std::fs::read_to_string(dir.join("layout.s")).map_err(io(&dir))?;
        let value = |name: &str| -> Result<u64, ModuleError> {
            let marker = format!("->{name} $");
            assembly
                .lines()
                .find_map(|l| {
                    let rest = &l[l.find(&marker)? + marker.len()..];
                    rest.split('"').next()?.parse().ok()
                })
                .ok_or_else(|| {
                    ModuleError::Headers(format!("the layout probe gave no value for {name}"))
                })
        };
        let mut v = [0u64; 11];
        for (slot, name) in v.iter_mut().zip(LAYOUT_NAMES) {
            *slot = value(name)?;
        }
        Ok(Layout {
            func: [v[0], v[1], v[2], v[3]],
            object: [v[4], v[5], v[6]],
            patch: [v[7], v[8], v[9], v[10]],
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), ModuleError> {
    std::fs::write(path, text).map_err(io(path))
}

/// `layout.rs`: the target's numbers, which the scaffolding's asserts check against.
fn layout_rs(layout: &Layout) -> String {
    let mut out = String::from(
        "// Generated by `graftbench module build` from the kernel headers it builds against.\n",
    );
    let values = layout
        .func
        .iter()
        .chain(&layout.object)
        .chain(&layout.patch);
    for (name, value) in LAYOUT_NAMES.iter().zip(values) {
        let _ = writeln!(out, "pub const {}: usize = {value};", name.to_uppercase());
    }
    out
}

/// A `#[repr(C)]` struct with `fields` (name, Rust type, offset, size) at their offsets
/// and byte padding between, `size` bytes in all.
fn rust_struct(name: &str, size: u64, fields: &[(&str, &str, u64, u64)]) -> String {
    let mut fields = fields.to_vec();
    fields.sort_by_key(|f| f.2);
    let mut out = format!("#[repr(C)]\npub struct {name} {{\n");
    let mut at = 0;
    for (i, (field, ty, offset, width)) in fields.iter().enumerate() {
        if *offset > at {
            let _ = writeln!(out, "    _pad{i}: [u8; {}],", offset - at);
        }
        let _ = writeln!(out, "    pub {field}: {ty},");
        at = offset + width;
    }
    if size > at {
        let _ = writeln!(out, "    _tail: [u8; {}],", size - at);
    }
    out.push_str("}\n");
    out
}

/// The zero value of a struct made by [`rust_struct`].
fn zero_value(size: u64, fields: &[(&str, &str, u64, u64)]) -> String {
    let mut fields = fields.to_vec();
    fields.sort_by_key(|f| f.2);
    let mut out = String::new();
    let mut at = 0;
    for (i, (field, ty, offset, width)) in fields.iter().enumerate() {
        if *offset > at {
            let _ = write!(out, "_pad{i}: [0; {}], ", offset - at);
        }
        let zero = if ty.starts_with('*') {
            "core::ptr::null_mut()"
        } else if *ty == "bool" {
            "false"
        } else {
            "0"
        };
        let _ = write!(out, "{field}: {zero} as {ty}, ");
        at = offset + width;
    }
    if size > at {
        let _ = write!(out, "_tail: [0; {}], ", size - at);
    }
    out
}

/// The contents of a Rust byte-string literal for `bytes`.
fn byte_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b' '..=b'~' if b != b'"' && b != b'\\' => char::from(b).to_string(),
            other => format!("\\x{other:02x}"),
        })
        .collect()
}

fn c_string(text: &str) -> String {
    format!("c\"{}\"", text.escape_default())
}

/// The Rust scaffolding for `spec` on a kernel with `layout`.
fn scaffold_rs(spec: &ModuleSpec, layout: &Layout, kernel: &KernelDir) -> String {
    let func_fields = [
        ("old_name", "*const core::ffi::c_char", layout.func[1], 8),
        ("new_func", "*mut core::ffi::c_void", layout.func[2], 8),
        ("old_sympos", "core::ffi::c_ulong", layout.func[3], 8),
    ];
    let object_fields = [
        ("name", "*const core::ffi::c_char", layout.object[1], 8),
        ("funcs", "*mut KlpFunc", layout.object[2], 8),
    ];
    let patch_fields = [
        ("module", "*mut core::ffi::c_void", layout.patch[1], 8),
        ("objs", "*mut KlpObject", layout.patch[2], 8),
        ("replace", "bool", layout.patch[3], 1),
    ];
    let mut objects: Vec<&str> = Vec::new();
    for r in &spec.replacements {
        if !objects.contains(&r.object.as_str()) {
            objects.push(&r.object);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by `graftbench module new` for the livepatch module `{}`.
// The klp_* structs are laid out from the target's headers; `layout.rs` is regenerated
// from the headers at every build and the asserts below refuse a mismatch.
#![no_std]
#![allow(non_upper_case_globals, dead_code, static_mut_refs)]

mod layout {{
    include!(\"layout.rs\");
}}

{}
{}
{}
const _: () = {{
    use core::mem::{{offset_of, size_of}};
    assert!(size_of::<KlpFunc>() == layout::KLP_FUNC_SIZE, \"struct klp_func has another size on this kernel\");
    assert!(offset_of!(KlpFunc, old_name) == layout::KLP_FUNC_OLD_NAME, \"klp_func.old_name moved\");
    assert!(offset_of!(KlpFunc, new_func) == layout::KLP_FUNC_NEW_FUNC, \"klp_func.new_func moved\");
    assert!(offset_of!(KlpFunc, old_sympos) == layout::KLP_FUNC_OLD_SYMPOS, \"klp_func.old_sympos moved\");
    assert!(size_of::<KlpObject>() == layout::KLP_OBJECT_SIZE, \"struct klp_object has another size on this kernel\");
    assert!(offset_of!(KlpObject, name) == layout::KLP_OBJECT_NAME, \"klp_object.name moved\");
    assert!(offset_of!(KlpObject, funcs) == layout::KLP_OBJECT_FUNCS, \"klp_object.funcs moved\");
    assert!(size_of::<KlpPatch>() == layout::KLP_PATCH_SIZE, \"struct klp_patch has another size on this kernel\");
    assert!(offset_of!(KlpPatch, module) == layout::KLP_PATCH_MOD, \"klp_patch.mod moved\");
    assert!(offset_of!(KlpPatch, objs) == layout::KLP_PATCH_OBJS, \"klp_patch.objs moved\");
    assert!(offset_of!(KlpPatch, replace) == layout::KLP_PATCH_REPLACE, \"klp_patch.replace moved\");
}};

impl KlpFunc {{
    const END: KlpFunc = KlpFunc {{ {} }};
}}
impl KlpObject {{
    const END: KlpObject = KlpObject {{ {} }};
}}

extern \"C\" {{
    static mut __this_module: u8;
    fn klp_enable_patch(patch: *mut KlpPatch) -> core::ffi::c_int;",
        spec.name,
        rust_struct("KlpFunc", layout.func[0], &func_fields),
        rust_struct("KlpObject", layout.object[0], &object_fields),
        rust_struct("KlpPatch", layout.patch[0], &patch_fields),
        zero_value(layout.func[0], &func_fields),
        zero_value(layout.object[0], &object_fields),
    );
    let rethunk = kernel.enabled("CONFIG_RETHUNK");
    if rethunk {
        let _ = writeln!(out, "    fn __x86_return_thunk();");
    }
    let mut new_names: Vec<&str> = spec
        .replacements
        .iter()
        .map(|r| r.new_name.as_str())
        .collect();
    new_names.sort_unstable();
    new_names.dedup();
    for name in &new_names {
        let _ = writeln!(out, "    fn {name}();");
    }
    out.push_str("}\n\n");
    let zero_func = zero_value(layout.func[0], &func_fields);
    let zero_object = zero_value(layout.object[0], &object_fields);
    let zero_patch = zero_value(layout.patch[0], &patch_fields);
    for (i, object) in objects.iter().enumerate() {
        let funcs: Vec<&Replacement> = spec
            .replacements
            .iter()
            .filter(|r| r.object == *object)
            .collect();
        let _ = writeln!(
            out,
            "static mut FUNCS_{i}: [KlpFunc; {}] = [",
            funcs.len() + 1
        );
        for r in funcs {
            let _ = writeln!(
                out,
                "    KlpFunc {{ old_name: {}.as_ptr(), new_func: {} as *mut core::ffi::c_void, old_sympos: {}, ..KlpFunc {{ {zero_func} }} }},",
                c_string(&r.old_name),
                r.new_name,
                r.old_sympos
            );
        }
        out.push_str("    KlpFunc::END,\n];\n");
    }
    let _ = writeln!(
        out,
        "static mut OBJECTS: [KlpObject; {}] = [",
        objects.len() + 1
    );
    for (i, object) in objects.iter().enumerate() {
        // vmlinux is the object without a name.
        let name = if *object == "vmlinux" {
            "core::ptr::null()".to_owned()
        } else {
            format!("{}.as_ptr()", c_string(object))
        };
        let _ = writeln!(
            out,
            "    KlpObject {{ name: {name}, funcs: &raw mut FUNCS_{i} as *mut KlpFunc, ..KlpObject {{ {zero_object} }} }},"
        );
    }
    out.push_str("    KlpObject::END,\n];\n");
    let _ = writeln!(
        out,
        "// Named, so that `graftbench module info` can read the descriptors back.
#[unsafe(no_mangle)]
static mut graftbench_klp_patch: KlpPatch = KlpPatch {{
    module: &raw mut __this_module as *mut core::ffi::c_void,
    objs: &raw mut OBJECTS as *mut KlpObject,
    replace: {},
    ..KlpPatch {{ {zero_patch} }}
}};
",
        spec.cumulative
    );
    // init_module tail-calls klp_enable_patch(&PATCH): no return of its own, which the
    // kernel's objtool would want through the return thunk on this build.
    let endbr = if kernel.enabled("CONFIG_X86_KERNEL_IBT") {
        "\"endbr64\", "
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "#[unsafe(naked)]
#[no_mangle]
pub unsafe extern \"C\" fn init_module() -> core::ffi::c_int {{
    core::arch::naked_asm!({endbr}\"lea rdi, [rip + {{patch}}]\", \"jmp {{enable}}\", \"int3\", patch = sym graftbench_klp_patch, enable = sym klp_enable_patch)
}}

#[unsafe(naked)]
#[no_mangle]
pub unsafe extern \"C\" fn cleanup_module() {{
    core::arch::naked_asm!({endbr}{})
}}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {{
    loop {{}}
}}
",
        if rethunk {
            "\"jmp {thunk}\", \"int3\", thunk = sym __x86_return_thunk"
        } else {
            "\"ret\", \"int3\""
        }
    );
    // .modinfo: plain `pub` statics (a `#[used]` one would get its own retained section,
    // and the kernel reads only the first .modinfo).
    let mut entries = vec![
        ("livepatch".to_owned(), "Y".to_owned()),
        ("license".to_owned(), "GPL".to_owned()),
        // The layout the descriptors were written with, for reading them back.
        ("graftbench.klp_layout".to_owned(), layout.encode()),
    ];
    entries.extend(
        spec.keys
            .iter()
            .map(|(k, v)| (format!("graftbench.{k}"), v.clone())),
    );
    for (i, (key, value)) in entries.iter().enumerate() {
        let text = format!("{key}={value}\0");
        let _ = writeln!(
            out,
            "#[link_section = \".modinfo\"]\npub static MODINFO_{i}: [u8; {}] = *b\"{}\";",
            text.len(),
            byte_string(text.as_bytes())
        );
    }
    out
}

/// Checks a specification.
fn check(spec: &ModuleSpec) -> Result<(), ModuleError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 55
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        return Err(ModuleError::Spec(format!(
            "module name `{}`: use 1 to 55 letters, digits or `_`",
            spec.name
        )));
    }
    if spec.replacements.is_empty() {
        return Err(ModuleError::Spec(
            "no function to replace: give at least one OBJECT:FUNCTION=NEW_FUNCTION".into(),
        ));
    }
    for r in &spec.replacements {
        let defined = spec.c_source.contains(&format!("{}(", r.new_name));
        if !defined {
            return Err(ModuleError::Spec(format!(
                "{} is not defined in the replacement source",
                r.new_name
            )));
        }
    }
    for (key, value) in &spec.keys {
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || value.contains(['\0', '\n'])
        {
            return Err(ModuleError::Spec(format!(
                "modinfo key `{key}={value}` is not allowed"
            )));
        }
    }
    Ok(())
}

/// Writes a module directory for `spec`: the C replacement, the Rust scaffolding laid out
/// for `kernel`, the Kbuild file.
pub fn generate(
    dir: &Path,
    spec: &ModuleSpec,
    kernel: &KernelDir,
    limit: Duration,
) -> Result<(), ModuleError> {
    check(spec)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let layout = kernel.layout(dir, limit)?;
    write(&dir.join("replacement.c"), &spec.c_source)?;
    let klp: String = spec
        .klp_symbols
        .iter()
        .map(|k| format!("{} {} {}\n", k.name, k.object, k.sympos))
        .collect();
    write(&dir.join("klp-symbols"), &klp)?;
    write(&dir.join("layout.rs"), &layout_rs(&layout))?;
    write(
        &dir.join("scaffold.rs"),
        &scaffold_rs(spec, &layout, kernel),
    )?;
    write(
        &dir.join("Kbuild"),
        &format!(
            "# Generated by graftbench: the C replacement functions and the Rust scaffolding\n\
             # (scaffold_rs.o_shipped, compiled from scaffold.rs by `graftbench module build`:\n\
             # not scaffold.o, which kbuild would try to build from scaffold.rs with its own rules).\n\
             obj-m := {name}.o\n{name}-y := replacement.o scaffold_rs.o\n",
            name = spec.name
        ),
    )?;
    Ok(())
}

/// The flags kernel code needs from rustc: the kernel code model, no red zone, no SSE,
/// abort on panic, no unwind tables.
pub const RUSTC_FLAGS: [&str; 16] = [
    "--edition=2021",
    "--crate-type=lib",
    "--emit=obj",
    "--target=x86_64-unknown-linux-gnu",
    "-Ccode-model=kernel",
    "-Crelocation-model=static",
    "-Ctarget-feature=-sse,-sse2,+soft-float",
    "-Cpanic=abort",
    "-Cno-redzone=yes",
    "-Copt-level=2",
    "-Cforce-unwind-tables=no",
    "-Cdebuginfo=0",
    "-Ccodegen-units=1",
    "-Aunknown_lints",
    "-Aforbidden_lint_groups",
    "--cap-lints=warn",
];

/// Builds the module in `dir` (made by [`generate`]) against `kernel`; returns the `.ko`.
pub fn build(dir: &Path, kernel: &KernelDir, limit: Duration) -> Result<PathBuf, ModuleError> {
    // `make -C KDIR M=DIR` resolves a relative DIR against KDIR, not against the caller.
    let dir = &std::path::absolute(dir).map_err(io(dir))?;
    let kbuild = std::fs::read_to_string(dir.join("Kbuild")).map_err(io(&dir.join("Kbuild")))?;
    let name = kbuild
        .lines()
        .find_map(|l| l.strip_prefix("obj-m := "))
        .and_then(|o| o.strip_suffix(".o"))
        .ok_or_else(|| {
            ModuleError::Spec(format!(
                "{} has no obj-m line",
                dir.join("Kbuild").display()
            ))
        })?
        .to_owned();
    let started = Instant::now();
    let left = |limit: Duration| limit.saturating_sub(started.elapsed());
    // The layout of the headers built against, which the scaffolding's asserts check.
    let layout = kernel.layout(dir, left(limit))?;
    write(&dir.join("layout.rs"), &layout_rs(&layout))?;
    let object = dir.join("scaffold_rs.o_shipped");
    let mut rustc = Command::new("rustc");
    rustc
        .args(RUSTC_FLAGS)
        .arg(dir.join("scaffold.rs"))
        .arg("-o")
        .arg(&object);
    run_logged(
        &mut rustc,
        "rustc (scaffold.rs)",
        &dir.join("rustc.log"),
        left(limit),
    )?;
    // objtool, as kbuild runs it on C objects of this configuration.
    let objtool = kernel.path().join("tools/objtool/objtool");
    let mut args = vec!["--module"];
    for (option, flag) in [
        ("CONFIG_UNWINDER_ORC", "--orc"),
        ("CONFIG_RETPOLINE", "--retpoline"),
        ("CONFIG_RETHUNK", "--rethunk"),
        ("CONFIG_SLS", "--sls"),
        ("CONFIG_HAVE_STATIC_CALL_INLINE", "--static-call"),
        ("CONFIG_X86_SMAP", "--uaccess"),
        ("CONFIG_X86_KERNEL_IBT", "--ibt"),
    ] {
        if kernel.enabled(option) {
            args.push(flag);
        }
    }
    if objtool.exists() {
        run_logged(
            Command::new(&objtool).args(&args).arg(&object),
            "objtool (scaffold_rs.o)",
            &dir.join("objtool.log"),
            left(limit),
        )?;
    }
    // modpost reads a .cmd file for every object of a multi-object module.
    write(
        &dir.join(".scaffold_rs.o.cmd"),
        &format!(
            "cmd_{dir}/scaffold_rs.o := rustc {} {dir}/scaffold.rs -o {dir}/scaffold_rs.o_shipped\n",
            RUSTC_FLAGS.join(" "),
            dir = dir.display()
        ),
    )?;
    let log = dir.join("build.log");
    // modpost only warns about symbols the kernel does not export: they become livepatch
    // relocations below.
    run_logged(
        Command::new("make")
            .arg("-C")
            .arg(kernel.path())
            .arg(format!("M={}", dir.display()))
            .arg("KBUILD_MODPOST_WARN=1")
            .arg("modules"),
        "make modules",
        &log,
        left(limit),
    )?;
    // `WARNING: modpost: "saved_command_line" [.../x.ko] undefined!`
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut unexported: Vec<String> = text
        .lines()
        .filter(|l| l.contains("modpost: \"") && l.ends_with("undefined!"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    unexported.sort();
    unexported.dedup();
    let ko = dir.join(format!("{name}.ko"));
    if !ko.exists() {
        return Err(ModuleError::Build {
            step: "make modules".into(),
            errors: Vec::new(),
            detail: format!("{} was not made", ko.display()),
            log: log.display().to_string(),
        });
    }
    if !unexported.is_empty() {
        klp_relocate(dir, &ko, &unexported, &log)?;
    }
    Ok(ko)
}

/// Turns the module's references to `unexported` symbols into livepatch relocations.
fn klp_relocate(
    dir: &Path,
    ko: &Path,
    unexported: &[String],
    log: &Path,
) -> Result<(), ModuleError> {
    let listed_path = dir.join("klp-symbols");
    let listed: Vec<crate::klp::KlpSymbol> = std::fs::read_to_string(&listed_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(crate::klp::KlpSymbol {
                name: fields.next()?.to_owned(),
                object: fields.next()?.to_owned(),
                sympos: fields.next()?.parse().ok()?,
            })
        })
        .collect();
    let module = std::fs::read(ko).map_err(io(ko))?;
    // The objects the patch replaces functions of, from its own descriptors.
    let mut objects: Vec<String> = crate::modinfo::read(&module)
        .map(|info| info.replaces.into_iter().map(|r| r.object).collect())
        .unwrap_or_default();
    objects.sort();
    objects.dedup();
    let mut symbols = Vec::new();
    let mut unplaced = Vec::new();
    for name in unexported {
        match (listed.iter().find(|k| &k.name == name), objects.as_slice()) {
            (Some(k), _) => symbols.push(k.clone()),
            (None, [only]) => symbols.push(crate::klp::KlpSymbol {
                name: name.clone(),
                object: only.clone(),
                sympos: 0,
            }),
            (None, _) => unplaced.push(name.clone()),
        }
    }
    if !unplaced.is_empty() {
        return Err(ModuleError::Unexported {
            symbols: unplaced,
            log: log.display().to_string(),
        });
    }
    let (rewritten, moved) =
        crate::klp::write_relocations(&module, &symbols).map_err(|e| ModuleError::Build {
            step: "livepatch relocations".into(),
            errors: Vec::new(),
            detail: e.to_string(),
            log: log.display().to_string(),
        })?;
    std::fs::write(ko, rewritten).map_err(io(ko))?;
    let mut note = String::new();
    for k in &symbols {
        let _ = writeln!(
            note,
            "klp symbol {} in {} (sympos {})",
            k.name, k.object, k.sympos
        );
    }
    let _ = writeln!(note, "{moved} relocation(s) moved to .klp.rela sections");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .map_err(io(log))?;
    use std::io::Write as _;
    file.write_all(note.as_bytes()).map_err(io(log))?;
    Ok(())
}

/// Runs a command with its output in `log`, killed after `limit`.
fn run_logged(
    command: &mut Command,
    step: &str,
    log: &Path,
    limit: Duration,
) -> Result<(), ModuleError> {
    let file = std::fs::File::create(log).map_err(io(log))?;
    let err = file.try_clone().map_err(io(log))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| ModuleError::Build {
            step: step.to_owned(),
            errors: Vec::new(),
            detail: format!("cannot start it: {e}"),
            log: log.display().to_string(),
        })?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io(log))? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ModuleError::Timeout {
                step: step.to_owned(),
                seconds: limit.as_secs(),
                log: log.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains(": error:") || l.contains(": error[") || l.starts_with("error"))
        .take(10)
        .map(str::to_owned)
        .collect();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    Err(ModuleError::Build {
        step: step.to_owned(),
        errors,
        detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        log: log.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_parse_and_refuse_what_is_not_a_symbol() {
        let r: Replacement = "vmlinux:cmdline_proc_show=lp_show".parse().unwrap();
        assert_eq!(
            r,
            Replacement {
                object: "vmlinux".into(),
                old_name: "cmdline_proc_show".into(),
                old_sympos: 0,
                new_name: "lp_show".into()
            }
        );
        let r: Replacement = "nf_tables:helper.isra.0,2=lp_helper".parse().unwrap();
        assert_eq!((r.old_name.as_str(), r.old_sympos), ("helper.isra.0", 2));
        for bad in [
            "cmdline_proc_show=x",
            "vmlinux:f",
            "vmlinux:f=",
            "vm linux:f=g",
            "vmlinux:f,x=g",
            "vmlinux:f=g\"h",
        ] {
            assert!(bad.parse::<Replacement>().is_err(), "{bad}");
        }
    }

    #[test]
    fn structs_are_laid_out_at_the_targets_offsets() {
        let text = rust_struct(
            "KlpFunc",
            152,
            &[
                ("old_name", "*const u8", 0, 8),
                ("old_sympos", "u64", 16, 8),
            ],
        );
        assert_eq!(
            text,
            "#[repr(C)]\npub struct KlpFunc {\n    pub old_name: *const u8,\n    _pad1: [u8; 8],\n    pub old_sympos: u64,\n    _tail: [u8; 128],\n}\n"
        );
    }
}
