//! `graftbench index` and the index side of `graftbench analyze`: finding, checking,
//! building and writing the index of one kernel build.
//!
//! An index is valid for a kernel build when it was written by this format version and
//! every object it holds has the GNU build-id of the file it was built from. Anything
//! else (another build, a module added or rebuilt, an older Graftbench) makes it stale,
//! and it is rebuilt from the inputs. Index files are written to a temporary file and
//! renamed into place, so a reader never sees half of one.

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

/// A read-only view of one input file.
pub struct Mapped {
    map: memmap2::Mmap,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Maps a file for reading.
pub fn map(path: &Path) -> Result<Mapped> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only. Another process truncating the file meanwhile would
    // fault (SIGBUS) rather than corrupt anything; the debug files this reads are build
    // outputs nobody rewrites in place.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    Ok(Mapped { map })
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

    /// Whether `index` was built from exactly these files.
    pub fn matches(&self, index: &KernelIndex) -> Result<bool> {
        if index.objects.len() != self.modules.len() + 1 {
            return Ok(false);
        }
        let mut objects = index.objects.iter();
        for path in std::iter::once(&self.vmlinux).chain(&self.modules) {
            let expected = objects.next().and_then(|o| o.build_id.as_deref());
            let data = map(path)?;
            if build_id(&data).as_deref() != expected || expected.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads every object into a new index, with a progress bar on a terminal.
    pub fn index(&self) -> Result<KernelIndex> {
        let inputs: Vec<(&Path, Mapped)> = std::iter::once(&self.vmlinux)
            .chain(&self.modules)
            .map(|p| Ok((p.as_path(), map(p)?)))
            .collect::<Result<_>>()?;
        let total: u64 = inputs.iter().map(|(_, data)| debug_info_size(data)).sum();
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
        let (vmlinux_path, vmlinux_data) = &inputs[0];
        let vmlinux = ObjectIndex::build("vmlinux", vmlinux_data, &|read| {
            bar.set_position(read);
        })
        .with_context(|| format!("indexing {}", vmlinux_path.display()))?;
        done.store(debug_info_size(vmlinux_data), Ordering::Relaxed);

        let modules = &inputs[1..];
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<ObjectIndex>>>> =
            Mutex::new((0..modules.len()).map(|_| None).collect());
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(modules.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, data)) = modules.get(i) else {
                        break;
                    };
                    let name = module_name(data).unwrap_or_else(|| name_from_path(path));
                    let result = ObjectIndex::build(&name, data, &|_| {})
                        .with_context(|| format!("indexing the module {}", path.display()));
                    let size = debug_info_size(data);
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
        for slot in slots {
            objects.push(slot.context("a module was not indexed")??);
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

/// Reads an index file.
pub fn read(path: &Path) -> Result<KernelIndex> {
    // Mapped rather than read: the tables are decoded straight from the page cache.
    let bytes = map(path)?;
    KernelIndex::from_bytes(&bytes).with_context(|| format!("{} is not usable", path.display()))
}

/// Writes an index file atomically (a temporary file in the same directory, renamed).
pub fn write(path: &Path, index: &KernelIndex) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    use std::io::Write;
    temporary
        .write_all(&index.to_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    temporary
        .persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What [`ensure`] did.
pub enum Freshness {
    /// The index on disk matched the inputs.
    UpToDate,
    /// It was missing, stale or unreadable, and was rebuilt; the reason.
    Rebuilt(String),
}

/// The index at `path` for `build`, rebuilt and written when it is missing or stale.
pub fn ensure(path: &Path, build: &KernelBuild, force: bool) -> Result<(KernelIndex, Freshness)> {
    let why = if force {
        "rebuild requested".to_owned()
    } else if !path.exists() {
        "no index yet".to_owned()
    } else {
        match read(path) {
            Ok(index) if build.matches(&index)? => return Ok((index, Freshness::UpToDate)),
            Ok(_) => "the kernel build changed (build-ids differ)".to_owned(),
            Err(e) => format!("{e:#}"),
        }
    };
    let index = build.index()?;
    write(path, &index)?;
    Ok((index, Freshness::Rebuilt(why)))
}
