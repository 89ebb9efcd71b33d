//! What a kernel image says about itself: the facts a target is registered with, read
//! before anything is indexed so that a file that is not a kernel image with debug
//! information is refused with the reason.

use object::{Object, ObjectSection};
use std::borrow::Cow;

/// The facts of one kernel image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageFacts {
    /// The GNU build-id, in hex.
    pub build_id: String,
    /// `uname -r`, from the `Linux version ...` banner, when the image has one.
    pub kernel_release: Option<String>,
    /// The architecture, as `uname -m` names it (`x86_64`).
    pub arch: String,
    /// `DW_AT_producer` of the first compilation unit: the compiler and its flags.
    pub producer: Option<String>,
    /// Size of `.debug_info`.
    pub debug_info_bytes: u64,
}

/// Why a file is not a kernel image Graftbench can analyse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Not an ELF file at all.
    #[error("is not an ELF file")]
    NotElf,
    /// ELF, without a GNU build-id note.
    #[error("has no GNU build-id note: is it a kernel image?")]
    NoBuildId,
    /// ELF, without `.debug_info`: a stripped image (the -dbg package's vmlinux has it).
    #[error("has no debug information (.debug_info): use the image from the debug package")]
    NoDebugInfo,
}

/// The longest banner release accepted (`uname -r` is at most 64 bytes).
const MAX_RELEASE: usize = 64;

/// Reads the facts of `data`, a kernel image.
pub fn inspect(data: &[u8]) -> Result<ImageFacts, ImageError> {
    let file = object::File::parse(data).map_err(|_| ImageError::NotElf)?;
    // A build-id names the build's directory: only 8 to 64 bytes of it, in hex.
    let build_id = crate::index::build_id(data)
        .filter(|id| (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(ImageError::NoBuildId)?;
    let debug_info = file
        .section_by_name(".debug_info")
        .ok_or(ImageError::NoDebugInfo)?;
    let arch = match file.architecture() {
        object::Architecture::X86_64 => "x86_64",
        object::Architecture::Aarch64 => "aarch64",
        object::Architecture::I386 => "i386",
        object::Architecture::PowerPc64 => "ppc64le",
        object::Architecture::S390x => "s390x",
        object::Architecture::Riscv64 => "riscv64",
        _ => "unknown",
    }
    .to_owned();
    Ok(ImageFacts {
        build_id,
        kernel_release: banner_release(&file),
        arch,
        producer: first_producer(&file),
        debug_info_bytes: debug_info.size(),
    })
}

/// The release in `Linux version RELEASE (...)`, searched in `.rodata` (where
/// `linux_banner` lives), else in the whole image.
fn banner_release(file: &object::File<'_>) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let rodata = file
        .section_by_name(".rodata")
        .and_then(|s| s.data().ok())
        .unwrap_or_default();
    let start = rodata
        .windows(BANNER.len())
        .position(|w| w == BANNER)?
        .checked_add(BANNER.len())?;
    let rest = rodata.get(start..)?;
    let end = rest
        .iter()
        .take(MAX_RELEASE + 1)
        .position(|&b| b == b' ' || b == 0)?;
    let release = std::str::from_utf8(rest.get(..end)?).ok()?;
    let plausible = !release.is_empty()
        && release
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b));
    plausible.then(|| release.to_owned())
}

/// `DW_AT_producer` of the first unit of `.debug_info` the C compiler made (the first
/// units of a kernel are often assembly: `GNU AS 2.40`); the first unit's when none of
/// the first thousand is C.
fn first_producer(file: &object::File<'_>) -> Option<String> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let mut units = dwarf.units();
    let mut first = None;
    for _ in 0..1000 {
        let Ok(Some(header)) = units.next() else {
            break;
        };
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut entries = unit.entries();
        let Some(value) = entries
            .next_dfs()
            .ok()
            .flatten()
            .and_then(|root| root.attr_value(gimli::DW_AT_producer))
        else {
            continue;
        };
        let Ok(text) = unit.unit_ref(&dwarf).attr_string(value) else {
            continue;
        };
        let producer: String = text.to_string_lossy().chars().take(1024).collect();
        if !producer.starts_with("GNU AS") {
            return Some(producer);
        }
        first.get_or_insert(producer);
    }
    first
}
