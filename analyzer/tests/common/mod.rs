//! Builds the C fixtures in `tests/fixtures` with the machine's gcc, the way the kernel
//! builds: `-O2 -g -pg -mfentry -mrecord-mcount -fno-pie`, notrace through
//! `no_instrument_function`.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixture sources, in link order; `stubs.c` last (a module leaves it out).
pub const SOURCES: [&str; 9] = [
    "clones.c",
    "cross.c",
    "dup_a.c",
    "dup_b.c",
    "inline_a.c",
    "inline_b.c",
    "macros.c",
    "macros_user.c",
    "stubs.c",
];

pub fn fixtures() -> PathBuf {
    // Works from any crate of the workspace that includes this module.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/fixtures")
}

pub fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fixture objects compiled with `-gdwarf-{dwarf}` (no debug info when `dwarf` is 0).
pub struct Build {
    pub dir: tempfile::TempDir,
    pub objects: Vec<PathBuf>,
}

impl Build {
    pub fn compile(dwarf: u8) -> Build {
        Build::compile_with(dwarf, &[])
    }

    /// [`Build::compile`] with extra compiler flags (`-fcf-protection=branch` for IBT).
    pub fn compile_with(dwarf: u8, flags: &[&str]) -> Build {
        Build::compile_sources(dwarf, &SOURCES, flags)
    }

    /// Other fixture sources than [`SOURCES`], in link order (`stubs.c` last, for
    /// [`Build::vmlinux`]): `configured.c` is built on its own.
    pub fn compile_sources(dwarf: u8, sources: &[&str], flags: &[&str]) -> Build {
        let dir = tempfile::tempdir().expect("temporary directory");
        let objects = sources
            .iter()
            .map(|source| {
                let object = dir.path().join(source.replace(".c", ".o"));
                let mut gcc = Command::new("gcc");
                gcc.args(["-O2", "-fno-pie", "-pg", "-mfentry", "-mrecord-mcount"]);
                gcc.args(flags);
                if dwarf > 0 {
                    gcc.args(["-g", &format!("-gdwarf-{dwarf}")]);
                }
                run(gcc
                    .arg("-I")
                    .arg(fixtures())
                    .arg("-c")
                    .arg(fixtures().join(source))
                    .arg("-o")
                    .arg(&object));
                object
            })
            .collect();
        Build { dir, objects }
    }

    /// A linked image laid out like vmlinux: the mcount table between
    /// `__start_mcount_loc` and `__stop_mcount_loc`.
    pub fn vmlinux(&self) -> Vec<u8> {
        let image = self.dir.path().join("vmlinux");
        run(Command::new("gcc")
            .args(["-nostdlib", "-static", "-no-pie", "-Wl,-e,fixture_entry"])
            .arg("-Wl,--defsym=__start_mcount_loc=__start___mcount_loc")
            .arg("-Wl,--defsym=__stop_mcount_loc=__stop___mcount_loc")
            .args(&self.objects)
            .arg("-o")
            .arg(&image));
        std::fs::read(&image).expect("read image")
    }

    /// A relocatable object like a `.ko` (everything but the stubs, which the kernel
    /// would provide): `__mcount_loc` and the debug sections hold relocations.
    pub fn module(&self) -> Vec<u8> {
        let module = self.dir.path().join("fixture.ko");
        run(Command::new("ld")
            .arg("-r")
            .args(&self.objects[..self.objects.len() - 1])
            .arg("-o")
            .arg(&module));
        std::fs::read(&module).expect("read module")
    }

    /// `objcopy --only-keep-debug` of an image built by [`Build::vmlinux`] or
    /// [`Build::module`] (`name` is its file name in the build directory).
    pub fn debug_only(&self, name: &str) -> Vec<u8> {
        let out = self.dir.path().join(format!("{name}.debug"));
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(self.dir.path().join(name))
            .arg(&out));
        std::fs::read(&out).expect("read debug file")
    }

    /// The vmlinux with its debug sections compressed by objcopy (`zlib` or `zstd`).
    pub fn compressed_vmlinux(&self, method: &str) -> Vec<u8> {
        self.vmlinux();
        let out = self.dir.path().join(format!("vmlinux.{method}"));
        run(Command::new("objcopy")
            .arg(format!("--compress-debug-sections={method}"))
            .arg(self.dir.path().join("vmlinux"))
            .arg(&out));
        std::fs::read(&out).expect("read compressed image")
    }

    /// [`Build::module`] with the `.modinfo` kbuild writes (`name=...`) and a build-id.
    pub fn module_named(&self, name: &str) -> Vec<u8> {
        self.module();
        let modinfo = self.dir.path().join("modinfo");
        std::fs::write(&modinfo, format!("license=GPL\0name={name}\0")).expect("modinfo");
        let note = self.dir.path().join("build-id");
        // An NT_GNU_BUILD_ID note: namesz 4, descsz 20, type 3, "GNU\0", 20 bytes.
        let mut bytes = Vec::new();
        for word in [4u32, 20, 3] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(b"GNU\0");
        bytes.extend((0..20u8).map(|i| i.wrapping_mul(37) ^ name.len() as u8));
        std::fs::write(&note, bytes).expect("note");
        let module = self.dir.path().join(format!("{name}.ko"));
        run(Command::new("objcopy")
            .arg("--add-section")
            .arg(format!(".modinfo={}", modinfo.display()))
            .arg("--add-section")
            .arg(format!(".note.gnu.build-id={}", note.display()))
            .arg("--set-section-flags=.note.gnu.build-id=alloc,readonly")
            .arg(self.dir.path().join("fixture.ko"))
            .arg(&module));
        std::fs::read(&module).expect("read module")
    }
}

/// The target's tree for source analyses: the fixtures, at the paths the debug
/// information names them by, in a directory of their own, with its identifier index.
pub struct FixtureTree {
    _dir: tempfile::TempDir,
    pub source: analyzer::source::SourceDir,
    pub index: analyzer::source::SourceIndex,
}

/// The fixture tree, made once per test binary.
pub fn fixture_tree() -> &'static FixtureTree {
    static TREE: std::sync::OnceLock<FixtureTree> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("analyzer/tests/fixtures");
        std::fs::create_dir_all(&into).unwrap();
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
        let source = analyzer::source::SourceDir::new(dir.path()).unwrap();
        let index =
            analyzer::source::SourceIndex::build(dir.path(), &|_, _| {}).expect("source index");
        FixtureTree {
            _dir: dir,
            source,
            index,
        }
    })
}
