//! `graftbench index` and the index side of `graftbench analyze`: finding, checking,
//! building and writing the index of one kernel build.
//!
//! An index is valid for a kernel build when it was written by this format version and
//! every object it holds has the GNU build-id of the file it was built from. Anything
//! else (another build, a module added or rebuilt, an older Graftbench) makes it stale,
//! and it is rebuilt from the inputs. Index files are written atomically.

use crate::files::{map, write_atomically};
use analyzer::index::{build_id, module_name, KernelIndex, ObjectIndex};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The inputs of one kernel build: vmlinux and, optionally, a directory of modules.
pub struct KernelBuild {
    /// The vmlinux with debug information.
    pub vmlinux: PathBuf,
    /// Module files (`*.ko`, with debug information), sorted.
    pub modules: Vec<PathBuf>,
}

impl KernelBuild {
    /// The build made of `vmlinux` and every `*.ko` under `modules`.
    pub fn new(vmlinux: &Path, modules: Option<&Path>) -> Result<KernelBuild> {
        let mut found = Vec::new();
        if let Some(dir) = modules {
            if !dir.is_dir() {
                bail!("--modules {}: not a directory", dir.display());
            }
            find_modules(dir, &mut found)?;
            if found.is_empty() {
                bail!("--modules {}: no .ko files in it", dir.display());
            }
            found.sort();
        }
        Ok(KernelBuild {
            vmlinux: vmlinux.to_owned(),
            modules: found,
        })
    }

    /// The vmlinux build-id, which names the build.
    pub fn build_id(&self) -> Result<String> {
        let image = map(&self.vmlinux)?;
        build_id(&image).with_context(|| {
            format!(
                "{} has no GNU build-id note: is it a kernel image?",
                self.vmlinux.display()
            )
        })
    }

    /// Whether an index with these objects (name, build-id) was built from exactly these
    /// files.
    pub fn matches(&self, objects: &[(String, Option<String>)]) -> Result<bool> {
        if objects.len() != self.modules.len() + 1 {
            return Ok(false);
        }
        for (path, (_, expected)) in std::iter::once(&self.vmlinux)
            .chain(&self.modules)
            .zip(objects)
        {
            let data = map(path)?;
            if expected.is_none() || build_id(&data) != *expected {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads every object into a new index, with a progress bar on a terminal.
    pub fn index(&self) -> Result<KernelIndex> {
        // Modules are mapped one at a time as they are read: a distribution kernel has
        // thousands, five gigabytes in all.
        let mut total = 0;
        for path in std::iter::once(&self.vmlinux).chain(&self.modules) {
            total += debug_info_size(&map(path)?);
        }
        let bar = ProgressBar::new(total.max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} of DWARF ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("indexing");
        let done = AtomicU64::new(0);

        // vmlinux reads its units on every core; modules are small, one per core.
        let vmlinux_data = map(&self.vmlinux)?;
        let vmlinux = ObjectIndex::build("vmlinux", &vmlinux_data, &|read| {
            bar.set_position(read);
        })
        .with_context(|| format!("indexing {}", self.vmlinux.display()))?;
        done.store(debug_info_size(&vmlinux_data), Ordering::Relaxed);
        drop(vmlinux_data);

        let modules = &self.modules;
        let next = AtomicUsize::new(0);
        type Failed = (String, Option<String>, String);
        let results: Mutex<Vec<Option<Result<ObjectIndex, Failed>>>> =
            Mutex::new((0..modules.len()).map(|_| None).collect());
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(modules.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = modules.get(i) else {
                        break;
                    };
                    let (result, size) = match map(path) {
                        Ok(data) => {
                            let name = module_name(&data).unwrap_or_else(|| name_from_path(path));
                            let result = ObjectIndex::build(&name, &data, &|_| {})
                                .map_err(|e| (name, build_id(&data), e.to_string()));
                            (result, debug_info_size(&data))
                        }
                        Err(e) => (Err((name_from_path(path), None, format!("{e:#}"))), 0),
                    };
                    bar.set_position(done.fetch_add(size, Ordering::Relaxed) + size);
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                });
            }
        });
        bar.finish_and_clear();
        let mut objects = vec![vmlinux];
        let slots = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a module indexing thread panicked"))?;
        // One bad module does not cost the others: it is named, and kept in the index as
        // an object with no tables whose whole debug information is marked skipped, so
        // an analysis says what it could not look into.
        for (slot, path) in slots.into_iter().zip(modules) {
            match slot.context("a module was not indexed")? {
                Ok(object) => objects.push(object),
                Err((name, build_id, error)) => {
                    eprintln!(
                        "graftbench: warning: skipped the module {}: {error}",
                        path.display()
                    );
                    objects.push(ObjectIndex::unreadable(&name, build_id, &error));
                }
            }
        }
        for object in &objects {
            for unit in &object.skipped {
                if unit.offset > 0 || !unit.rest_of_section {
                    eprintln!(
                        "graftbench: warning: {}: skipped the unit at .debug_info+{:#x}{}: {}",
                        object.name,
                        unit.offset,
                        unit.name
                            .as_deref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default(),
                        unit.error
                    );
                }
            }
        }
        Ok(KernelIndex { objects })
    }
}

/// The module name from a file name, as kbuild derives it (`nf_tables.ko` ->
/// `nf_tables`, dashes to underscores).
fn name_from_path(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".ko").replace('-', "_"))
        .unwrap_or_default()
}

fn find_modules(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            find_modules(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            found.push(path);
        }
    }
    Ok(())
}

fn debug_info_size(data: &[u8]) -> u64 {
    use object::{Object, ObjectSection};
    object::File::parse(data)
        .ok()
        .and_then(|f| f.section_by_name(".debug_info").map(|s| s.size()))
        .unwrap_or(0)
}

/// Which objects of an index to read.
#[derive(Clone, Copy)]
pub enum Objects<'p> {
    /// All of them.
    All,
    /// Those whose debug information names one of these source paths.
    For(&'p [&'p str]),
}

/// Reads an index file (the objects `which` asks for).
pub fn read(path: &Path, which: Objects<'_>) -> Result<KernelIndex> {
    // Mapped rather than read: the tables are decoded straight from the page cache.
    let bytes = map(path)?;
    match which {
        Objects::All => KernelIndex::from_bytes(&bytes),
        Objects::For(paths) => KernelIndex::from_bytes_for_paths(&bytes, paths),
    }
    .with_context(|| format!("{} is not usable", path.display()))
}

/// What [`load`] did.
pub enum Freshness {
    /// The index on disk matched the inputs.
    UpToDate,
    /// It was missing, stale or unreadable, and was rebuilt; the reason.
    Rebuilt(String),
}

/// The index at `path` for `build`: read (the objects `which` asks for) when it is up to
/// date, else rebuilt from the build and written (and then complete).
pub fn load(
    path: &Path,
    build: &KernelBuild,
    force: bool,
    which: Objects<'_>,
) -> Result<(KernelIndex, Freshness)> {
    let why = if force {
        "rebuild requested".to_owned()
    } else if !path.exists() {
        "no index yet".to_owned()
    } else {
        let ids = map(path).and_then(|bytes| {
            KernelIndex::build_ids(&bytes)
                .with_context(|| format!("{} is not usable", path.display()))
        });
        match ids {
            Ok(ids) if build.matches(&ids)? => match read(path, which) {
                Ok(index) => return Ok((index, Freshness::UpToDate)),
                Err(e) => format!("{e:#}"),
            },
            Ok(_) => "the kernel build changed (build-ids differ)".to_owned(),
            Err(e) => format!("{e:#}"),
        }
    };
    let index = build.index()?;
    write_atomically(path, &index.to_bytes())?;
    Ok((index, Freshness::Rebuilt(why)))
}
