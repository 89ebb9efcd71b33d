//! An identifier index of a source tree: for each identifier, the files that use it.
//!
//! Following a changed macro through the tree means finding every file that mentions
//! its name. Scanning 70,000 files per question takes minutes; this index is built once
//! per tree (linear in its size) and answers with the few files to read.
//!
//! A kernel tree has some 4 million distinct identifiers (most of them register names
//! in generated headers), so the table is front-coded, as search engines store their
//! term dictionaries: identifiers in byte order, in blocks of [`BLOCK`]; the first of a
//! block is written whole, the others as the length of the prefix they share with the
//! one before and the rest. Each is followed by its file list: delta-coded LEB128 file
//! numbers, prefixed by their length in bytes so a lookup can skip them. A lookup
//! binary-searches the blocks' first identifiers and reads one block. (Linux 6.1: 57,000
//! files indexed in about 20 seconds.)
//!
//! The bytes: the magic, the format version (u32 LE), the CRC-32 of the rest (u32 LE),
//! then the tables (postcard): the file paths, the files left out, the identifier count,
//! the entries, and the offset of each block.

use super::{checked_relative, read_capped, scan, SourceError, MAX_SOURCE_FILE_BYTES};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The first bytes of a source index.
pub const SOURCE_INDEX_MAGIC: [u8; 8] = *b"GRAFTSRC";
/// The layout version of a source index.
pub const SOURCE_INDEX_VERSION: u32 = 1;

/// Identifiers per front-coded block.
const BLOCK: usize = 16;

/// The identifier index of one source tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIndex {
    /// Tree-relative paths of the files indexed, in byte order.
    files: Vec<String>,
    /// Files left out, with why (too large, unreadable).
    skipped: Vec<(String, String)>,
    /// How many identifiers.
    count: u32,
    /// The identifiers in byte order, front-coded, each with its file list.
    entries: Vec<u8>,
    /// Where each block of [`BLOCK`] entries starts in `entries`.
    blocks: Vec<u32>,
}

/// One entry read from the table.
struct Entry<'a> {
    /// Bytes shared with the identifier before.
    shared: usize,
    /// The rest of the identifier.
    suffix: &'a [u8],
    /// Its file list.
    postings: &'a [u8],
}

/// Reads the entry at `*at`, moving past it.
fn read_entry<'a>(entries: &'a [u8], at: &mut usize) -> Option<Entry<'a>> {
    let shared = read_varint(entries, at)? as usize;
    let suffix_len = read_varint(entries, at)? as usize;
    let suffix = entries.get(*at..at.checked_add(suffix_len)?)?;
    *at += suffix_len;
    let postings_len = read_varint(entries, at)? as usize;
    let postings = entries.get(*at..at.checked_add(postings_len)?)?;
    *at += postings_len;
    Some(Entry {
        shared,
        suffix,
        postings,
    })
}

/// Whether the file at `path` is source the index covers: C, headers, assembly.
fn is_source(path: &str) -> bool {
    path.ends_with(".c") || path.ends_with(".h") || path.ends_with(".S")
}

fn push_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl SourceIndex {
    /// Indexes the `.c`, `.h` and `.S` files under `root`. Symbolic links and hidden
    /// directories (`.git`) are not followed; a file larger than
    /// [`MAX_SOURCE_FILE_BYTES`](super::MAX_SOURCE_FILE_BYTES) or unreadable is left
    /// out and listed ([`SourceIndex::skipped`]). `progress` gets the bytes read so far
    /// and the total.
    pub fn build(root: &Path, progress: &dyn Fn(u64, u64)) -> Result<SourceIndex, SourceError> {
        SourceIndex::build_until(root, progress, &|| false)
    }

    /// [`SourceIndex::build`], asking `stop` before each file: when it says so,
    /// [`SourceError::Stopped`].
    pub fn build_until(
        root: &Path,
        progress: &dyn Fn(u64, u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<SourceIndex, SourceError> {
        let mut found = Vec::new();
        let mut skipped = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let at = root.join(&dir);
            let entries = std::fs::read_dir(&at).map_err(|source| SourceError::Io {
                path: if dir.is_empty() {
                    root.display().to_string()
                } else {
                    dir.clone()
                },
                source,
            })?;
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        skipped.push((dir.clone(), e.to_string()));
                        continue;
                    }
                };
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    // A name that is not UTF-8 is no kernel source path.
                    continue;
                };
                let path = if dir.is_empty() {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                };
                // `file_type` does not follow symbolic links: neither are they indexed.
                match entry.file_type() {
                    Ok(t) if t.is_dir() && !name.starts_with('.') => pending.push(path),
                    Ok(t) if t.is_file() && is_source(&name) => {
                        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                        if size > MAX_SOURCE_FILE_BYTES {
                            skipped.push((
                                path,
                                format!("{size} bytes, more than {MAX_SOURCE_FILE_BYTES}"),
                            ));
                        } else {
                            found.push((path, size));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => skipped.push((path, e.to_string())),
                }
            }
        }
        found.sort();
        skipped.sort();
        let total: u64 = found.iter().map(|(_, size)| size).sum();
        let mut done = 0u64;
        progress(0, total);
        let mut files = Vec::with_capacity(found.len());
        let mut by_name: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        for (path, size) in found {
            if stop() {
                return Err(SourceError::Stopped);
            }
            let text = match read_capped(&root.join(&path), &path, MAX_SOURCE_FILE_BYTES) {
                Ok(text) => text,
                Err(e) => {
                    skipped.push((path, e.to_string()));
                    continue;
                }
            };
            let id = files.len() as u32;
            let scanned = scan::scan(&text);
            let distinct: HashSet<&[u8]> = scanned.identifiers(&text).collect();
            for name in distinct {
                match by_name.get_mut(name) {
                    Some(list) => list.push(id),
                    None => {
                        by_name.insert(name.to_vec(), vec![id]);
                    }
                }
            }
            files.push(path);
            done += size;
            progress(done, total);
        }
        let mut sorted: Vec<(Vec<u8>, Vec<u32>)> = by_name.into_iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut index = SourceIndex {
            files,
            skipped,
            count: sorted.len() as u32,
            entries: Vec::new(),
            blocks: Vec::with_capacity(sorted.len() / BLOCK + 1),
        };
        let mut previous: &[u8] = &[];
        let mut postings = Vec::new();
        for (n, (name, ids)) in sorted.iter().enumerate() {
            let shared = if n % BLOCK == 0 {
                index.blocks.push(index.entries.len() as u32);
                0
            } else {
                previous
                    .iter()
                    .zip(name.iter())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            push_varint(&mut index.entries, shared as u32);
            push_varint(&mut index.entries, (name.len() - shared) as u32);
            index.entries.extend_from_slice(&name[shared..]);
            // Files were numbered in order, so each list is ascending.
            postings.clear();
            let mut last = 0;
            for (i, &id) in ids.iter().enumerate() {
                push_varint(&mut postings, if i == 0 { id } else { id - last });
                last = id;
            }
            push_varint(&mut index.entries, postings.len() as u32);
            index.entries.extend_from_slice(&postings);
            previous = name;
        }
        Ok(index)
    }

    /// The files indexed, tree-relative.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The files left out, each with why: the analysis cannot see uses there.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// How many distinct identifiers the tree has.
    pub fn identifier_count(&self) -> usize {
        self.count as usize
    }

    /// The first identifier of block `b` (written whole).
    fn block_head(&self, b: usize) -> &[u8] {
        let mut at = self.blocks[b] as usize;
        read_entry(&self.entries, &mut at).map_or(&[][..], |e| e.suffix)
    }

    /// The files that use the identifier `name` (outside comments and string
    /// literals), in path order.
    pub fn files_with(&self, name: &str) -> Vec<&str> {
        let wanted = name.as_bytes();
        // The last block whose first identifier is not after the one wanted.
        let (mut low, mut high) = (0, self.blocks.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.block_head(mid) <= wanted {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let Some(block) = low.checked_sub(1) else {
            return Vec::new();
        };
        let mut at = self.blocks[block] as usize;
        let mut current: Vec<u8> = Vec::new();
        for _ in 0..BLOCK {
            let Some(entry) = read_entry(&self.entries, &mut at) else {
                break;
            };
            current.truncate(entry.shared);
            current.extend_from_slice(entry.suffix);
            if current.as_slice() == wanted {
                return decode_postings(entry.postings)
                    .into_iter()
                    .filter_map(|id| self.files.get(id as usize).map(String::as_str))
                    .collect();
            }
            if current.as_slice() > wanted || at >= self.entries.len() {
                break;
            }
        }
        Vec::new()
    }

    /// The index's bytes: magic, version, CRC-32 of the tables, the tables.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain tables into a Vec cannot fail.
        let tables = postcard::to_stdvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(tables.len() + 16);
        out.extend_from_slice(&SOURCE_INDEX_MAGIC);
        out.extend_from_slice(&SOURCE_INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&tables).to_le_bytes());
        out.extend_from_slice(&tables);
        out
    }

    /// Reads an index's bytes; a foreign, other-version or damaged file is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<SourceIndex, SourceError> {
        let rest = bytes
            .strip_prefix(&SOURCE_INDEX_MAGIC)
            .ok_or(SourceError::NotASourceIndex)?;
        let (version, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(SourceError::NotASourceIndex)?;
        let found = u32::from_le_bytes(*version);
        if found != SOURCE_INDEX_VERSION {
            return Err(SourceError::SourceIndexVersion { found });
        }
        let damaged = |what: &str| SourceError::SourceIndexDamaged(what.to_owned());
        let (crc, tables) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("the file ends before its checksum"))?;
        if crc32fast::hash(tables) != u32::from_le_bytes(*crc) {
            return Err(damaged("the tables do not match their checksum"));
        }
        let index: SourceIndex = postcard::from_bytes(tables)
            .map_err(|e| SourceError::SourceIndexDamaged(e.to_string()))?;
        index.check().map_err(|what| damaged(&what))?;
        Ok(index)
    }

    /// Every entry readable, identifiers strictly sorted, blocks where the entries say,
    /// file lists ascending and naming files that exist, paths inside the tree: lookups
    /// can then index freely.
    fn check(&self) -> Result<(), String> {
        for path in &self.files {
            checked_relative(path).map_err(|e| e.to_string())?;
        }
        let mut at = 0;
        let mut previous: Vec<u8> = Vec::new();
        for n in 0..self.count as usize {
            if n % BLOCK == 0 && self.blocks.get(n / BLOCK).map(|&b| b as usize) != Some(at) {
                return Err(format!("block {} does not start where it says", n / BLOCK));
            }
            let entry = read_entry(&self.entries, &mut at).ok_or("an entry is truncated")?;
            if entry.shared > previous.len() || (n % BLOCK == 0 && entry.shared != 0) {
                return Err("an identifier shares more than there is".into());
            }
            let mut current = previous[..entry.shared].to_vec();
            current.extend_from_slice(entry.suffix);
            if n > 0 && current <= previous {
                return Err("identifiers are not sorted".into());
            }
            let mut read = 0;
            let mut id: Option<u32> = None;
            while read < entry.postings.len() {
                let delta =
                    read_varint(entry.postings, &mut read).ok_or("a file list is truncated")?;
                let next = match id {
                    None => Some(delta),
                    Some(_) if delta == 0 => None,
                    Some(previous) => previous.checked_add(delta),
                };
                match next {
                    Some(next) if (next as usize) < self.files.len() => id = Some(next),
                    _ => return Err("a file list names a file that is not there".into()),
                }
            }
            previous = current;
        }
        if at != self.entries.len() || self.blocks.len() != (self.count as usize).div_ceil(BLOCK) {
            return Err("the entries and the identifier count disagree".into());
        }
        Ok(())
    }
}

/// A file list's numbers (checked when the index was read).
fn decode_postings(list: &[u8]) -> Vec<u32> {
    let mut at = 0;
    let mut ids = Vec::new();
    let mut id = 0u32;
    while at < list.len() {
        let Some(delta) = read_varint(list, &mut at) else {
            break;
        };
        id = if ids.is_empty() {
            delta
        } else {
            id.saturating_add(delta)
        };
        ids.push(id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identifier_is_found_across_block_boundaries_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let names = |range: std::ops::Range<u32>| -> String {
            range.map(|n| format!("int id{n:03};\n")).collect()
        };
        std::fs::write(dir.path().join("a.c"), names(0..100)).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.h"), names(50..150)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "id999").unwrap();
        let index = SourceIndex::build(dir.path(), &|_, _| {}).unwrap();
        assert_eq!(index.files(), ["a.c", "sub/b.h"]);
        // `int` and the 150 names.
        assert_eq!(index.identifier_count(), 151);
        for n in 0..150 {
            let expected: &[&str] = match n {
                0..50 => &["a.c"],
                50..100 => &["a.c", "sub/b.h"],
                _ => &["sub/b.h"],
            };
            assert_eq!(index.files_with(&format!("id{n:03}")), expected, "id{n:03}");
        }
        for absent in ["", "a", "id", "id0", "id1500", "id999", "zzz"] {
            assert!(index.files_with(absent).is_empty(), "{absent}");
        }
        let read = SourceIndex::from_bytes(&index.to_bytes()).unwrap();
        assert_eq!(read, index);
    }
}
