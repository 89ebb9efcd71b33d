//! The on-disk index of one kernel build: finding, checking, building and writing it, for
//! the command line and server jobs alike.
//!
//! An index is valid for a kernel build when it was written by this format version and
//! every object it holds has the GNU build-id of the file it was built from. Anything
//! else (another build, a module added or rebuilt, an older Graftbench) makes it stale,
//! and it is rebuilt from the inputs. Index files are written atomically.

use crate::index::{build_id, module_name, IndexError, KernelIndex, ObjectIndex};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Why a kernel build could not be indexed, or its index not read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file or directory could not be read or written.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done: "opening", "reading", "writing", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// `--modules` names something that is not a directory.
    #[error("--modules {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// `--modules` names a directory without modules.
    #[error("--modules {}: no .ko files in it", .0.display())]
    NoModules(PathBuf),
    /// The kernel image has no GNU build-id note.
    #[error("{} has no GNU build-id note: is it a kernel image?", .0.display())]
    NoBuildId(PathBuf),
    /// vmlinux itself could not be indexed.
    #[error("indexing {}: {source}", .path.display())]
    Index {
        /// The image.
        path: PathBuf,
        /// Why.
        source: IndexError,
    },
    /// An index file could not be read.
    #[error("{} is not usable: {source}", .path.display())]
    Unusable {
        /// The index file.
        path: PathBuf,
        /// Why.
        source: IndexError,
    },
    /// The caller asked the work to stop ([`load_until`]).
    #[error("stopped before the index was complete")]
    Stopped,
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> CacheError + 'p {
    move |source| CacheError::Io {
        what,
        path: path.to_owned(),
        source,
    }
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
pub fn map(path: &Path) -> Result<Mapped, CacheError> {
    let file = std::fs::File::open(path).map_err(io("opening", path))?;
    // SAFETY: the map is read-only. Another process truncating the file meanwhile would
    // fault (SIGBUS) rather than corrupt anything; the files this reads (debug files,
    // indexes) are replaced by rename, never rewritten in place.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mapping", path))?;
    Ok(Mapped { map })
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created when
/// missing), renamed into place: a reader never sees half a file. A replaced file keeps
/// its mode (the temporary file is created 0600).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut temporary =
        tempfile::NamedTempFile::new_in(dir).map_err(io("creating a temporary file in", dir))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(io("writing", path))?;
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::set_permissions(temporary.path(), metadata.permissions())
            .map_err(io("setting the mode of", path))?;
    }
    temporary
        .persist(path)
        .map_err(|e| io("writing", path)(e.error))?;
    Ok(())
}

/// How far an index build is: bytes of `.debug_info` read of all there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Read so far.
    pub done: u64,
    /// In all.
    pub total: u64,
}

/// The inputs of one kernel build: vmlinux and, optionally, a directory of modules.
pub struct KernelBuild {
    /// The vmlinux with debug information.
    pub vmlinux: PathBuf,
    /// Module files (`*.ko`, with debug information), sorted.
    pub modules: Vec<PathBuf>,
}

impl KernelBuild {
    /// The build made of `vmlinux` and every `*.ko` under `modules`.
    pub fn new(vmlinux: &Path, modules: Option<&Path>) -> Result<KernelBuild, CacheError> {
        let mut found = Vec::new();
        if let Some(dir) = modules {
            if !dir.is_dir() {
                return Err(CacheError::NotADirectory(dir.to_owned()));
            }
            find_modules(dir, &mut found)?;
            if found.is_empty() {
                return Err(CacheError::NoModules(dir.to_owned()));
            }
            found.sort();
        }
        Ok(KernelBuild {
            vmlinux: vmlinux.to_owned(),
            modules: found,
        })
    }

    /// The vmlinux build-id, which names the build.
    pub fn build_id(&self) -> Result<String, CacheError> {
        let image = map(&self.vmlinux)?;
        build_id(&image).ok_or_else(|| CacheError::NoBuildId(self.vmlinux.clone()))
    }

    /// Whether an index with these objects (name, identity) was built from exactly these
    /// files.
    pub fn matches(&self, objects: &[(String, Option<String>)]) -> Result<bool, CacheError> {
        if objects.len() != self.modules.len() + 1 {
            return Ok(false);
        }
        for (path, (_, expected)) in std::iter::once(&self.vmlinux)
            .chain(&self.modules)
            .zip(objects)
        {
            let data = map(path)?;
            if expected.is_none() || Some(identity(&data)) != *expected {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads every object into a new index, calling `progress` as it goes (from several
    /// threads). A module that cannot be read is kept as an object whose debug
    /// information is all skipped ([`ObjectIndex::unreadable`]); units that cannot be
    /// decoded are in each object's `skipped`. The caller reports both.
    pub fn index(&self, progress: &(dyn Fn(Progress) + Sync)) -> Result<KernelIndex, CacheError> {
        self.index_until(progress, &|| false)
    }

    /// [`KernelBuild::index`], asking `stop` after vmlinux and before each module (a build
    /// has thousands): when it says so, [`CacheError::Stopped`].
    pub fn index_until(
        &self,
        progress: &(dyn Fn(Progress) + Sync),
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<KernelIndex, CacheError> {
        // Modules are mapped one at a time as they are read: a distribution kernel has
        // thousands, five gigabytes in all.
        let mut total = 0;
        for path in std::iter::once(&self.vmlinux).chain(&self.modules) {
            total += debug_info_size(&map(path)?);
        }
        let report = |done: u64| progress(Progress { done, total });
        let done = AtomicU64::new(0);

        // vmlinux reads its units on every core; modules are small, one per core.
        let vmlinux_data = map(&self.vmlinux)?;
        let vmlinux = ObjectIndex::build("vmlinux", &vmlinux_data, &report).map_err(|source| {
            CacheError::Index {
                path: self.vmlinux.clone(),
                source,
            }
        })?;
        done.store(debug_info_size(&vmlinux_data), Ordering::Relaxed);
        drop(vmlinux_data);
        if stop() {
            return Err(CacheError::Stopped);
        }

        let modules = &self.modules;
        let next = AtomicUsize::new(0);
        type Failed = (String, Option<String>, String);
        let results: Mutex<Vec<Option<Result<ObjectIndex, Failed>>>> =
            Mutex::new((0..modules.len()).map(|_| None).collect());
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(modules.len()) {
                scope.spawn(|| loop {
                    if stop() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = modules.get(i) else {
                        break;
                    };
                    let (result, size) = match map(path) {
                        Ok(data) => {
                            let name = module_name(&data).unwrap_or_else(|| name_from_path(path));
                            let result = ObjectIndex::build(&name, &data, &|_| {})
                                .map(|mut object| {
                                    object.build_id = Some(identity(&data));
                                    object
                                })
                                .map_err(|e| {
                                    let why = format!("{}: {e}", path.display());
                                    (name, Some(identity(&data)), why)
                                });
                            (result, debug_info_size(&data))
                        }
                        Err(e) => (Err((name_from_path(path), None, e.to_string())), 0),
                    };
                    report(done.fetch_add(size, Ordering::Relaxed) + size);
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                });
            }
        });
        if stop() {
            return Err(CacheError::Stopped);
        }
        let mut objects = vec![vmlinux];
        // A poisoned lock means a module thread panicked: that panic was re-raised by
        // the scope above, so the lock is always clean here.
        let slots = results.into_inner().unwrap_or_else(|e| e.into_inner());
        // One bad module does not cost the others: it is kept in the index as an object
        // with no tables whose whole debug information is marked skipped.
        for (slot, path) in slots.into_iter().zip(modules) {
            match slot {
                Some(Ok(object)) => objects.push(object),
                Some(Err((name, build_id, error))) => {
                    objects.push(ObjectIndex::unreadable(&name, build_id, &error))
                }
                None => objects.push(ObjectIndex::unreadable(
                    &name_from_path(path),
                    None,
                    "it was not indexed",
                )),
            }
        }
        Ok(KernelIndex { objects })
    }
}

/// What names one input file in an index: its GNU build-id, or for a file without one (a
/// damaged module) `sha256:` and the digest of its bytes, so that an index holding such a
/// file is up to date until the file changes.
pub fn identity(data: &[u8]) -> String {
    build_id(data).unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    })
}

/// The module name from a file name, as kbuild derives it (`nf_tables.ko` ->
/// `nf_tables`, dashes to underscores).
fn name_from_path(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".ko").replace('-', "_"))
        .unwrap_or_default()
}

fn find_modules(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), CacheError> {
    let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("reading", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("reading", &path))?;
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
pub fn read(path: &Path, which: Objects<'_>) -> Result<KernelIndex, CacheError> {
    // Mapped rather than read: the tables are decoded straight from the page cache.
    let bytes = map(path)?;
    match which {
        Objects::All => KernelIndex::from_bytes(&bytes),
        Objects::For(paths) => KernelIndex::from_bytes_for_paths(&bytes, paths),
    }
    .map_err(|source| CacheError::Unusable {
        path: path.to_owned(),
        source,
    })
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
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(KernelIndex, Freshness), CacheError> {
    load_until(path, build, force, which, progress, &|| false)
}

/// [`load`], asking `stop` between steps of a rebuild ([`KernelBuild::index_until`]):
/// when it says so, [`CacheError::Stopped`] and nothing written.
pub fn load_until(
    path: &Path,
    build: &KernelBuild,
    force: bool,
    which: Objects<'_>,
    progress: &(dyn Fn(Progress) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(KernelIndex, Freshness), CacheError> {
    let why = if force {
        "rebuild requested".to_owned()
    } else if !path.exists() {
        "no index yet".to_owned()
    } else {
        let ids = map(path).and_then(|bytes| {
            KernelIndex::build_ids(&bytes).map_err(|source| CacheError::Unusable {
                path: path.to_owned(),
                source,
            })
        });
        match ids {
            Ok(ids) if build.matches(&ids)? => match read(path, which) {
                Ok(index) => return Ok((index, Freshness::UpToDate)),
                Err(e) => e.to_string(),
            },
            Ok(_) => "the kernel build changed (build-ids differ)".to_owned(),
            Err(e) => e.to_string(),
        }
    };
    let index = build.index_until(progress, stop)?;
    write_atomically(path, &index.to_bytes())?;
    Ok((index, Freshness::Rebuilt(why)))
}
