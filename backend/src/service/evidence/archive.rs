//! The bundle's container: a ustar archive written byte for byte the same way every time
//! (no owners, times or modes from the machine), so that a verifier can check every byte
//! of it. The last member, `seal.json`, names the SHA-256 of every byte before it in an
//! audit event that a signed checkpoint covers; the bytes after the seal's header are
//! exactly what [`expected_tail`] gives for its content.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// The seal's member name: always last.
pub const SEAL: &str = "seal.json";
/// The manifest's member name.
pub const MANIFEST: &str = "manifest.json";
/// The archive's block size.
const BLOCK: usize = 512;

/// The header every member gets: ustar, regular file, mode 0644, no owner, time 0.
pub fn header(path: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// The bytes from the seal's header to the end of the archive: its header, its content,
/// zeros to the block, and the two zero blocks that end an archive.
pub fn expected_tail(seal: &[u8]) -> io::Result<Vec<u8>> {
    let header = header(SEAL, seal.len() as u64)?;
    let mut tail = Vec::with_capacity(BLOCK * 4 + seal.len());
    tail.extend_from_slice(header.as_bytes());
    tail.extend_from_slice(seal);
    tail.resize(tail.len().div_ceil(BLOCK) * BLOCK, 0);
    tail.resize(tail.len() + 2 * BLOCK, 0);
    Ok(tail)
}

/// Counts and hashes what passes through to `inner`.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One member as the manifest lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its path in the archive.
    pub path: String,
    /// Its bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
}

/// Writes members one after another, then the seal.
pub struct Writer<W: Write> {
    builder: tar::Builder<Hashing<W>>,
    members: Vec<Member>,
}

impl<W: Write> Writer<W> {
    /// An archive written to `inner`.
    pub fn new(inner: W) -> Writer<W> {
        Writer {
            builder: tar::Builder::new(Hashing {
                inner,
                hasher: Sha256::new(),
            }),
            members: Vec::new(),
        }
    }

    /// Adds a member of `size` bytes read from `content`.
    pub fn add(&mut self, path: &str, size: u64, content: impl Read) -> io::Result<()> {
        let mut hashing = HashingReader::new(content);
        self.builder.append(&header(path, size)?, &mut hashing)?;
        self.members.push(Member {
            path: path.to_owned(),
            size,
            sha256: hashing.sha256(),
        });
        Ok(())
    }

    /// Adds a member held in memory.
    pub fn add_bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.add(path, bytes.len() as u64, bytes)
    }

    /// The members so far.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// SHA-256 of every byte written so far, hex: what the seal names.
    pub fn sha256_so_far(&self) -> String {
        hex::encode(self.builder.get_ref().hasher.clone().finalize())
    }

    /// Adds the seal and ends the archive; the writer back.
    pub fn seal(mut self, seal: &[u8]) -> io::Result<W> {
        self.builder
            .append(&header(SEAL, seal.len() as u64)?, seal)?;
        Ok(self.builder.into_inner()?.inner)
    }
}

/// Hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> HashingReader<R> {
    /// Reads `inner`.
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// SHA-256 of what was read, hex.
    pub fn sha256(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_what_the_writer_writes_after_everything_it_hashed() {
        let mut writer = Writer::new(Vec::new());
        writer.add_bytes("a.txt", b"hello").unwrap();
        writer.add_bytes("dir/b.json", b"{}").unwrap();
        let hashed = writer.sha256_so_far();
        let seal = br#"{"x":1}"#;
        let archive = writer.seal(seal).unwrap();
        let tail = expected_tail(seal).unwrap();
        assert!(archive.ends_with(&tail));
        let before = &archive[..archive.len() - tail.len()];
        assert_eq!(hex::encode(Sha256::digest(before)), hashed);
        // The archive reads back with the standard tool's rules.
        let mut read = tar::Archive::new(archive.as_slice());
        let names: Vec<String> = read
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "dir/b.json", SEAL]);
    }
}
