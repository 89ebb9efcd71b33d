//! Reading and writing the command line's files: inputs mapped, outputs replaced whole.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

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
    // fault (SIGBUS) rather than corrupt anything; the files this reads (debug files,
    // indexes) are replaced by rename, never rewritten in place.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    Ok(Mapped { map })
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created when
/// missing), renamed into place: a reader never sees half a file. A replaced file keeps
/// its mode (the temporary file is created 0600).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::set_permissions(temporary.path(), metadata.permissions())?;
    }
    temporary
        .persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
