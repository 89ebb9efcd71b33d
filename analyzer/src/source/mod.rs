//! The target kernel's own source tree: the files a fix is mapped onto and the text the
//! line table cannot see (macros, types, data).
//!
//! The analysis never walks a tree on its own: it asks a [`SourceTree`] for the files it
//! needs by their tree-relative path, and a [`SourceIndex`] (built once per tree) says
//! which files mention an identifier. [`SourceDir`] is the tree on disk; it refuses any
//! path that would leave its root.
//!
//! Source files are read as bytes: a line that is not UTF-8 is compared and scanned in
//! its lossy form, never refused.
//!
//! A [`KernelConfig`] (the build's `.config` or `autoconf.h`, see [`config`]) says which
//! lines of a file this build compiles: [`cond`] resolves the file's `#if`s with it, as
//! far as the configuration decides them ([`evaluate_if`]).

pub mod cond;
pub mod config;
mod ident;
pub(crate) mod scan;

pub use cond::{evaluate_if, Truth, MAX_CONDITION_DEPTH};
pub use config::{ConfigError, ConfigFormat, ConfigValue, KernelConfig, MAX_CONFIG_BYTES};
pub use ident::{SourceIndex, SOURCE_INDEX_MAGIC, SOURCE_INDEX_VERSION};

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest source file read, in bytes. The kernel's largest (generated register
/// headers) are about 15 MiB; anything past this is not source a fix maps onto.
pub const MAX_SOURCE_FILE_BYTES: u64 = 32 << 20;

/// Why the target's source could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A path that is absolute, climbs out of the tree or resolves (through a symbolic
    /// link) outside it.
    #[error("source path `{path}` {why}")]
    OutsideTree {
        /// The path as asked for.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A file larger than [`MAX_SOURCE_FILE_BYTES`].
    #[error("source file `{path}` is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Tree-relative path.
        path: String,
        /// Its size (at least; reading stops past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file could not be read.
    #[error("reading source file `{path}`: {source}")]
    Io {
        /// Tree-relative path (or the root, when the root itself is the problem).
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The caller asked the work to stop ([`SourceIndex::build_until`]).
    #[error("stopped before the source index was complete")]
    Stopped,
    /// Not a source index's bytes.
    #[error("not a Graftbench source index (it does not start with {:?})", String::from_utf8_lossy(&SOURCE_INDEX_MAGIC))]
    NotASourceIndex,
    /// A source index of another format version.
    #[error("source index format version {found}, this Graftbench reads version {SOURCE_INDEX_VERSION}: rebuild it")]
    SourceIndexVersion {
        /// The version in the file.
        found: u32,
    },
    /// A damaged source index.
    #[error("the source index is damaged: {0}")]
    SourceIndexDamaged(String),
}

/// A kernel source tree the analysis can read files from.
pub trait SourceTree {
    /// The bytes of the file at the tree-relative `path`, or `None` when the tree has no
    /// such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError>;
}

/// A source tree in a directory.
///
/// Every path is taken relative to the root; an absolute path, a `..` component, or a
/// symbolic link that resolves outside the root is refused, so a fix's paths cannot
/// make the analysis read other files of the machine.
#[derive(Debug, Clone)]
pub struct SourceDir {
    root: PathBuf,
}

impl SourceDir {
    /// The tree at `root`, which must be a directory.
    pub fn new(root: &Path) -> Result<SourceDir, SourceError> {
        let io = |source| SourceError::Io {
            path: root.display().to_string(),
            source,
        };
        let root = root.canonicalize().map_err(io)?;
        if !root.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Ok(SourceDir { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Refuses a tree-relative path that is absolute or has a `..` component.
pub(crate) fn checked_relative(path: &str) -> Result<&Path, SourceError> {
    let outside = |why| SourceError::OutsideTree {
        path: path.to_owned(),
        why,
    };
    if path.is_empty() {
        return Err(outside("is empty"));
    }
    let relative = Path::new(path);
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(outside("has a `..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(outside("is absolute")),
        }
    }
    Ok(relative)
}

/// Reads at most `limit` bytes of `file`, refusing a longer one (the size is checked
/// while reading, so a file growing after a `stat` cannot get past the limit).
pub(crate) fn read_capped(file: &Path, shown: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
    let io = |source| SourceError::Io {
        path: shown.to_owned(),
        source,
    };
    let handle = std::fs::File::open(file).map_err(io)?;
    let size = handle.metadata().map_err(io)?.len();
    if size > limit {
        return Err(SourceError::TooLarge {
            path: shown.to_owned(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    handle
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(SourceError::TooLarge {
            path: shown.to_owned(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

impl SourceTree for SourceDir {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let relative = checked_relative(path)?;
        let joined = self.root.join(relative);
        // Resolving the whole path follows every symbolic link on the way; what it
        // resolves to must still be under the root.
        let resolved = match joined.canonicalize() {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SourceError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        if !resolved.starts_with(&self.root) {
            return Err(SourceError::OutsideTree {
                path: path.to_owned(),
                why: "resolves outside the source tree",
            });
        }
        if !resolved.is_file() {
            return Ok(None);
        }
        read_capped(&resolved, path, MAX_SOURCE_FILE_BYTES).map(Some)
    }
}

/// The lines of a file's bytes, without their line ends (`\n`; a `\r` before it is
/// content, as in a hunk). A final line without a newline is a line; an empty file has
/// none.
pub(crate) fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}
