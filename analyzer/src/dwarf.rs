//! The debug information of one kernel object, read into plain tables.
//!
//! What the compiler did with each function is recorded here: the abstract instance of a
//! function that was inlined (`DW_AT_inline`), every `DW_TAG_inlined_subroutine` copy of
//! it with the out-of-line function that contains the copy and the chain of inlined
//! functions around it, the concrete out-of-line instances (clones included, pointing back
//! with `DW_AT_abstract_origin`), their formal parameters, and the direct calls
//! (`DW_TAG_call_site` / `DW_TAG_GNU_call_site`, tail calls marked).
//!
//! DIEs are named by their offset in `.debug_info` ([`DieOffset`]), which is unique across
//! compilation units. Relocatable objects (kernel modules) carry their debug sections
//! unrelocated; their relocations are applied before reading.

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitOffset};
use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectKind, ObjectSection, ObjectSymbol, RelocationTarget};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;

/// A DIE's offset in `.debug_info`.
pub type DieOffset = u64;

/// One compilation unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileUnit {
    /// `DW_AT_name`: the main source file.
    pub name: String,
    /// `DW_AT_comp_dir`.
    pub comp_dir: String,
    /// DWARF version (2 to 5).
    pub version: u16,
}

/// A formal parameter of a subprogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Its DIE.
    pub die: DieOffset,
    /// Name (from the abstract origin for concrete instances).
    pub name: Option<String>,
    /// The abstract parameter this one instantiates.
    pub abstract_origin: Option<DieOffset>,
    /// The parameter was replaced by a constant (`DW_AT_const_value`): the clone no longer
    /// takes it.
    pub const_value: bool,
    /// The register holding it on entry, when the location is a single `DW_OP_regN`.
    pub entry_register: Option<u16>,
    /// Some location is described (a register, an expression or a location list).
    pub has_location: bool,
    /// A location refers back to the caller's argument (`DW_OP_GNU_parameter_ref`): GCC
    /// removed the parameter from this clone and its value exists only at call sites.
    pub parameter_ref: bool,
}

/// A `DW_TAG_subprogram`: an abstract instance, a concrete out-of-line instance, or an
/// ordinary function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subprogram {
    /// Its DIE.
    pub die: DieOffset,
    /// Index into [`DwarfIndex::units`].
    pub unit: usize,
    /// Name; for a concrete instance, the name of its abstract origin.
    pub name: Option<String>,
    /// `DW_AT_linkage_name`, when present.
    pub linkage_name: Option<String>,
    /// Declaring file, as the line table names it.
    pub decl_file: Option<String>,
    /// Declaring line.
    pub decl_line: u32,
    /// Declared `inline` in the source (`DW_INL_declared_*`).
    pub declared_inline: bool,
    /// This DIE is an abstract instance root (`DW_AT_inline` present): inlined copies and
    /// out-of-line instances point to it.
    pub is_abstract: bool,
    /// For a concrete instance: the abstract instance it was made from.
    pub abstract_origin: Option<DieOffset>,
    /// A declaration only (`DW_AT_declaration`): a function defined elsewhere, named so
    /// that calls to it can point at it.
    pub declaration: bool,
    /// Visible outside its compilation unit (`DW_AT_external`).
    pub external: bool,
    /// Address ranges of its code (empty for abstract instances and declarations).
    pub ranges: Vec<(u64, u64)>,
    /// Formal parameters, in DIE order.
    pub params: Vec<Parameter>,
}

/// One inlined copy of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineSite {
    /// The abstract instance that was inlined.
    pub origin: DieOffset,
    /// The out-of-line subprogram whose code contains the copy.
    pub container: DieOffset,
    /// The abstract origins of the inlined functions around this copy inside the
    /// container, outermost first (empty when inlined directly into the container).
    pub chain: Vec<DieOffset>,
    /// The inlined copy this one sits in (its index in [`DwarfIndex::inline_sites`]).
    pub parent: Option<usize>,
    /// File of the call that was inlined.
    pub call_file: Option<String>,
    /// Line of the call that was inlined.
    pub call_line: u32,
    /// Address ranges of the copy.
    pub ranges: Vec<(u64, u64)>,
}

/// One direct call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSite {
    /// The out-of-line subprogram making the call.
    pub caller: DieOffset,
    /// The inlined function the call sits in, if it sits in an inlined copy.
    pub inlined_in: Option<DieOffset>,
    /// The called subprogram's DIE, as `DW_AT_call_origin` names it (an abstract instance,
    /// a concrete clone or a declaration).
    pub callee: DieOffset,
    /// A tail call (a jump, with no return to the caller).
    pub tail_call: bool,
}

/// Code generated from one source line: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRange {
    /// Index into [`DwarfIndex::files`].
    pub file: u32,
    /// Source line (1-based).
    pub line: u32,
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

/// Where some code of a source line ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeLocation {
    /// The out-of-line subprogram whose code this is.
    pub container: DieOffset,
    /// The inlined functions the code sits in, outermost first; the last one is the
    /// function whose source line it is. Empty when the line is the container's own.
    pub inline_chain: Vec<DieOffset>,
    /// The addresses.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

/// Everything read from one object's debug information.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DwarfIndex {
    /// Compilation units.
    pub units: Vec<CompileUnit>,
    /// Every subprogram DIE.
    pub subprograms: Vec<Subprogram>,
    /// Every inlined copy.
    pub inline_sites: Vec<InlineSite>,
    /// Every direct call.
    pub call_sites: Vec<CallSite>,
    /// Source files named by the line tables, as written there.
    pub files: Vec<String>,
    /// The line tables: which addresses came from which file:line.
    pub lines: Vec<LineRange>,
    /// Units that could not be decoded and were left out, in section order.
    #[serde(default)]
    pub skipped: Vec<SkippedUnit>,
}

/// A compilation unit left out of the index because its DWARF could not be decoded. The
/// rest of the object is indexed; an analysis that may need this unit says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedUnit {
    /// Its offset in `.debug_info`.
    pub offset: u64,
    /// Its `DW_AT_name` (the source file), when the unit's first DIE could be read.
    pub name: Option<String>,
    /// What was wrong, as the DWARF reader said it.
    pub error: String,
    /// The unit's header itself was unreadable, so every unit after it in the section
    /// (which is found only by reading that header's length) is missing too.
    pub rest_of_section: bool,
}

/// Table lengths of a [`DwarfIndex`], to undo a unit that failed halfway.
struct Lengths {
    units: usize,
    subprograms: usize,
    inline_sites: usize,
    call_sites: usize,
    files: usize,
    lines: usize,
}

impl DwarfIndex {
    fn lengths(&self) -> Lengths {
        Lengths {
            units: self.units.len(),
            subprograms: self.subprograms.len(),
            inline_sites: self.inline_sites.len(),
            call_sites: self.call_sites.len(),
            files: self.files.len(),
            lines: self.lines.len(),
        }
    }

    fn truncate(&mut self, to: &Lengths, file_ids: &mut HashMap<String, u32>) {
        self.units.truncate(to.units);
        self.subprograms.truncate(to.subprograms);
        self.inline_sites.truncate(to.inline_sites);
        self.call_sites.truncate(to.call_sites);
        self.files.truncate(to.files);
        self.lines.truncate(to.lines);
        file_ids.retain(|_, id| (*id as usize) < to.files);
    }
}

impl DwarfIndex {
    /// The subprogram at `die`.
    pub fn subprogram(&self, die: DieOffset) -> Option<&Subprogram> {
        self.subprograms
            .binary_search_by_key(&die, |s| s.die)
            .ok()
            .map(|i| &self.subprograms[i])
    }

    /// The name of the subprogram at `die`.
    pub fn name_of(&self, die: DieOffset) -> Option<&str> {
        self.subprogram(die).and_then(|s| s.name.as_deref())
    }

    /// Every place the code of `path:line` went: the out-of-line function holding it and
    /// the inline chain inside that function. `path` is matched against the end of the
    /// line table's file names on a `/` boundary, so a tree-relative path from a diff
    /// (`include/linux/skbuff.h`) finds `/build/linux/include/linux/skbuff.h`.
    pub fn code_for_line(&self, path: &str, line: u32) -> Vec<CodeLocation> {
        let files: Vec<u32> = (0..)
            .zip(&self.files)
            .filter(|(_, name)| path_matches(name, path))
            .map(|(i, _)| i)
            .collect();
        let mut found = Vec::new();
        for range in self
            .lines
            .iter()
            .filter(|r| r.line == line && files.contains(&r.file))
        {
            let holds = |ranges: &[(u64, u64)]| {
                ranges
                    .iter()
                    .any(|&(a, b)| a <= range.start && range.start < b)
            };
            let Some(container) = self.subprograms.iter().find(|s| holds(&s.ranges)) else {
                continue;
            };
            let mut sites: Vec<&InlineSite> = self
                .inline_sites
                .iter()
                .filter(|site| site.container == container.die && holds(&site.ranges))
                .collect();
            sites.sort_by_key(|site| site.chain.len());
            let inline_chain = sites.last().map_or_else(Vec::new, |innermost| {
                let mut chain = innermost.chain.clone();
                chain.push(innermost.origin);
                chain
            });
            found.push(CodeLocation {
                container: container.die,
                inline_chain,
                start: range.start,
                end: range.end,
            });
        }
        found
    }

    /// The abstract instances named `name`.
    pub fn abstract_instances<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Subprogram> + 'a {
        self.subprograms
            .iter()
            .filter(move |s| s.is_abstract && s.name.as_deref() == Some(name))
    }
}

/// Whether the line-table file name `name` is the tree-relative `path`.
pub fn path_matches(name: &str, path: &str) -> bool {
    let name = name.strip_prefix("./").unwrap_or(name);
    name == path
        || name
            .strip_suffix(path)
            .is_some_and(|prefix| prefix.ends_with('/'))
}

/// Why the debug information could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DwarfError {
    /// Not a 64-bit ELF file.
    #[error("`{object}` is not a readable 64-bit ELF file")]
    NotElf {
        /// The object.
        object: String,
        /// What the ELF reader said.
        source: object::Error,
    },
    /// No `.debug_info`.
    #[error("`{object}` has no debug information (.debug_info): use the -dbg vmlinux or module debug file")]
    NoDebugInfo {
        /// The object.
        object: String,
    },
    /// A section could not be decompressed or relocated.
    #[error("`{object}`: section {section}: {problem}")]
    Section {
        /// The object.
        object: String,
        /// The section.
        section: String,
        /// What went wrong.
        problem: String,
    },
    /// Not one unit could be decoded.
    #[error("`{object}`: malformed DWARF, no compilation unit could be read; the first, at .debug_info+{unit:#x}: {problem}")]
    Unreadable {
        /// The object.
        object: String,
        /// Offset of the first unit.
        unit: u64,
        /// What the DWARF reader said.
        problem: String,
    },
}

type Reader<'a> = EndianSlice<'a, RunTimeEndian>;

/// Reads the debug information of one ELF object.
pub fn read_dwarf(object_name: &str, data: &[u8]) -> Result<DwarfIndex, DwarfError> {
    read_dwarf_with_progress(object_name, data, &|_| {})
}

/// [`read_dwarf`], calling `progress` with the number of `.debug_info` bytes read so far
/// after each compilation unit (from several threads).
pub fn read_dwarf_with_progress(
    object_name: &str,
    data: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DwarfIndex, DwarfError> {
    let file = ElfFile64::<Endianness>::parse(data).map_err(|source| DwarfError::NotElf {
        object: object_name.to_owned(),
        source,
    })?;
    if file.section_by_name(".debug_info").is_none() {
        return Err(DwarfError::NoDebugInfo {
            object: object_name.to_owned(),
        });
    }
    let relocatable = file.kind() == ObjectKind::Relocatable;
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'_, [u8]>, DwarfError> {
        let Some(section) = file.section_by_name(id.name()) else {
            return Ok(Cow::Borrowed(&[]));
        };
        let problem = |problem: String| DwarfError::Section {
            object: object_name.to_owned(),
            section: id.name().to_owned(),
            problem,
        };
        let bytes = section
            .uncompressed_data()
            .map_err(|e| problem(e.to_string()))?;
        if relocatable {
            relocate(&file, &section, bytes).map_err(problem)
        } else {
            Ok(bytes)
        }
    })?;
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let dwarf = sections.borrow(|section| EndianSlice::new(section, endian));
    let mut headers = Vec::new();
    let mut units = dwarf.units();
    // A header that cannot be read ends the walk: the next unit is found by its length.
    let mut unreadable_tail = None;
    loop {
        match units.next() {
            Ok(Some(header)) => headers.push(header),
            Ok(None) => break,
            Err(source) => {
                let offset = headers
                    .last()
                    .map_or(0, |h: &gimli::UnitHeader<Reader<'_>>| {
                        (h.offset().0 + h.length_including_self()) as u64
                    });
                unreadable_tail = Some((offset, source));
                break;
            }
        }
    }
    // Units are independent: read them on every core, in contiguous runs of about equal
    // size so that DIE order (and with it the merged result) does not depend on timing.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16);
    let total: usize = headers.iter().map(|h| h.length_including_self()).sum();
    let mut runs: Vec<&[gimli::UnitHeader<Reader<'_>>]> = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, header) in headers.iter().enumerate() {
        size += header.length_including_self();
        if size * threads >= total * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(&headers[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&headers[start..]);
    let done = std::sync::atomic::AtomicU64::new(0);
    let read_run = |run: &[gimli::UnitHeader<Reader<'_>>]| -> Result<DwarfIndex, DwarfError> {
        let mut index = DwarfIndex::default();
        let mut file_ids = HashMap::new();
        for header in run {
            let offset = header.offset().0 as u64;
            let before = index.lengths();
            let read = dwarf
                .unit(*header)
                .and_then(|unit| read_unit(&dwarf, &unit, &mut index, &mut file_ids));
            if let Err(error) = read {
                // Whatever the unit added before it failed goes again; the rest stays.
                let name = index
                    .units
                    .get(before.units)
                    .map(|u| u.name.clone())
                    .filter(|n| !n.is_empty());
                index.truncate(&before, &mut file_ids);
                index.skipped.push(SkippedUnit {
                    offset,
                    name,
                    error: error.to_string(),
                    rest_of_section: false,
                });
            }
            let length = header.length_including_self() as u64;
            progress(done.fetch_add(length, std::sync::atomic::Ordering::Relaxed) + length);
        }
        Ok(index)
    };
    let parts: Vec<Result<DwarfIndex, DwarfError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| scope.spawn(|| read_run(run)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut index = DwarfIndex::default();
    for part in parts {
        merge(&mut index, part?);
    }
    if let Some((offset, source)) = unreadable_tail {
        index.skipped.push(SkippedUnit {
            offset,
            name: None,
            error: source.to_string(),
            rest_of_section: true,
        });
    }
    // Nothing readable at all is not an index with gaps: it is not DWARF we can read.
    if index.units.is_empty() {
        if let Some(first) = index.skipped.first() {
            return Err(DwarfError::Unreadable {
                object: object_name.to_owned(),
                unit: first.offset,
                problem: first.error.clone(),
            });
        }
    }
    resolve_names(&mut index);
    Ok(index)
}

/// Appends one run's tables to `into`, renumbering its units and files.
fn merge(into: &mut DwarfIndex, part: DwarfIndex) {
    let unit_base = into.units.len();
    let mut known: HashMap<String, u32> = (0u32..)
        .zip(into.files.iter())
        .map(|(i, name)| (name.clone(), i))
        .collect();
    let file_ids: Vec<u32> = part
        .files
        .into_iter()
        .map(|name| {
            let next = u32::try_from(into.files.len()).unwrap_or(u32::MAX);
            *known.entry(name.clone()).or_insert_with(|| {
                into.files.push(name);
                next
            })
        })
        .collect();
    into.units.extend(part.units);
    into.skipped.extend(part.skipped);
    into.subprograms
        .extend(part.subprograms.into_iter().map(|mut s| {
            s.unit += unit_base;
            s
        }));
    let site_base = into.inline_sites.len();
    into.inline_sites
        .extend(part.inline_sites.into_iter().map(|mut site| {
            site.parent = site.parent.map(|p| p + site_base);
            site
        }));
    into.call_sites.extend(part.call_sites);
    into.lines.extend(part.lines.into_iter().map(|mut l| {
        l.file = file_ids.get(l.file as usize).copied().unwrap_or(l.file);
        l
    }));
}

/// Applies a relocatable object's `.rela` entries to one of its debug sections.
fn relocate<'d>(
    file: &ElfFile64<'d, Endianness>,
    section: &object::read::elf::ElfSection64<'d, '_, Endianness>,
    bytes: Cow<'d, [u8]>,
) -> Result<Cow<'d, [u8]>, String> {
    let mut relocations = section.relocations().peekable();
    if relocations.peek().is_none() {
        return Ok(bytes);
    }
    let mut data = bytes.into_owned();
    for (offset, relocation) in relocations {
        let base = match relocation.target() {
            RelocationTarget::Symbol(index) => file
                .symbol_by_index(index)
                .map_err(|e| format!("relocation at {offset:#x}: {e}"))?
                .address(),
            _ => 0,
        };
        let value = base.wrapping_add_signed(relocation.addend());
        let at = usize::try_from(offset).map_err(|e| e.to_string())?;
        let width = usize::from(relocation.size() / 8);
        let slot = data
            .get_mut(at..at.saturating_add(width))
            .filter(|s| s.len() == width)
            .ok_or_else(|| format!("relocation at {offset:#x} is outside the section"))?;
        match width {
            4 => slot.copy_from_slice(&(value as u32).to_le_bytes()),
            8 => slot.copy_from_slice(&value.to_le_bytes()),
            other => return Err(format!("unexpected {other}-byte relocation at {offset:#x}")),
        }
    }
    Ok(Cow::Owned(data))
}

/// What encloses the DIE being read.
enum Frame {
    /// An out-of-line subprogram with code.
    Subprogram(DieOffset),
    /// An inlined copy of `origin`, at `site` in [`DwarfIndex::inline_sites`].
    Inlined {
        /// The abstract origin.
        origin: DieOffset,
        /// The site.
        site: usize,
    },
    /// Anything else (lexical blocks, abstract subprograms, types).
    Other,
}

fn read_unit<'d>(
    dwarf: &gimli::Dwarf<Reader<'d>>,
    unit: &gimli::Unit<Reader<'d>>,
    index: &mut DwarfIndex,
    file_ids: &mut HashMap<String, u32>,
) -> gimli::Result<()> {
    let unit_ref = unit.unit_ref(dwarf);
    let string = |value: Option<AttributeValue<Reader<'d>>>| -> Option<String> {
        let value = value?;
        unit_ref
            .attr_string(value)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let files = file_table(&unit_ref);
    let file = |value: Option<AttributeValue<Reader<'d>>>| -> Option<String> {
        let AttributeValue::FileIndex(i) = value? else {
            return None;
        };
        files.get(&i).cloned()
    };
    let die_of = |offset: UnitOffset| -> DieOffset {
        offset
            .to_debug_info_offset(&unit.header)
            .map_or(0, |o| o.0 as u64)
    };
    let reference = |value: Option<AttributeValue<Reader<'d>>>| -> Option<DieOffset> {
        match value? {
            AttributeValue::UnitRef(offset) => Some(die_of(offset)),
            AttributeValue::DebugInfoRef(offset) => Some(offset.0 as u64),
            _ => None,
        }
    };
    let udata = |value: Option<AttributeValue<Reader<'d>>>| -> u32 {
        value
            .and_then(|v| v.udata_value())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };

    let unit_number = index.units.len();
    let mut entries = unit.entries();
    let mut stack: Vec<(isize, Frame)> = Vec::new();
    let mut current_subprogram: Option<usize> = None;
    let mut current_subprogram_depth = isize::MAX;
    let mut first = true;
    while let Some(entry) = entries.next_dfs()? {
        let depth = entry.depth();
        while stack.last().is_some_and(|(d, _)| *d >= depth) {
            stack.pop();
        }
        if depth <= current_subprogram_depth {
            current_subprogram = None;
            current_subprogram_depth = isize::MAX;
        }
        let die = die_of(entry.offset());
        let tag = entry.tag();
        if first {
            first = false;
            index.units.push(CompileUnit {
                name: string(entry.attr_value(gimli::DW_AT_name)).unwrap_or_default(),
                comp_dir: string(entry.attr_value(gimli::DW_AT_comp_dir)).unwrap_or_default(),
                version: unit.header.version(),
            });
            stack.push((depth, Frame::Other));
            continue;
        }
        let ranges = || -> gimli::Result<Vec<(u64, u64)>> {
            let mut iter = unit_ref.die_ranges(entry)?;
            let mut ranges = Vec::new();
            while let Some(range) = iter.next()? {
                if range.end > range.begin {
                    ranges.push((range.begin, range.end));
                }
            }
            Ok(ranges)
        };
        let innermost_subprogram = || {
            stack.iter().rev().find_map(|(_, f)| match f {
                Frame::Subprogram(die) => Some(*die),
                _ => None,
            })
        };
        let frame = match tag {
            gimli::DW_TAG_subprogram => {
                let ranges = ranges()?;
                let inline = entry.attr_value(gimli::DW_AT_inline);
                let declared_inline = matches!(
                    inline,
                    Some(AttributeValue::Inline(gimli::DW_INL_declared_inlined))
                        | Some(AttributeValue::Inline(gimli::DW_INL_declared_not_inlined))
                );
                let has_code = !ranges.is_empty();
                index.subprograms.push(Subprogram {
                    die,
                    unit: unit_number,
                    name: string(entry.attr_value(gimli::DW_AT_name)),
                    linkage_name: string(entry.attr_value(gimli::DW_AT_linkage_name)),
                    decl_file: file(entry.attr_value(gimli::DW_AT_decl_file)),
                    decl_line: udata(entry.attr_value(gimli::DW_AT_decl_line)),
                    declared_inline,
                    is_abstract: inline.is_some(),
                    abstract_origin: reference(entry.attr_value(gimli::DW_AT_abstract_origin))
                        .or_else(|| reference(entry.attr_value(gimli::DW_AT_specification))),
                    declaration: entry.attr(gimli::DW_AT_declaration).is_some(),
                    external: entry.attr(gimli::DW_AT_external).is_some(),
                    ranges,
                    params: Vec::new(),
                });
                current_subprogram = Some(index.subprograms.len() - 1);
                current_subprogram_depth = depth;
                if has_code {
                    Frame::Subprogram(die)
                } else {
                    Frame::Other
                }
            }
            gimli::DW_TAG_formal_parameter => {
                // Only the subprogram's own parameters, not those of inlined copies.
                if let Some(i) =
                    current_subprogram.filter(|_| depth == current_subprogram_depth + 1)
                {
                    let location = entry.attr_value(gimli::DW_AT_location);
                    let has_location = location.is_some();
                    let entry_register = match &location {
                        Some(AttributeValue::Exprloc(expr)) => single_register(expr.0),
                        _ => None,
                    };
                    let parameter_ref = match location {
                        Some(AttributeValue::Exprloc(expr)) => {
                            uses_parameter_ref(expr, unit.encoding())
                        }
                        Some(value) => {
                            let mut found = false;
                            if let Some(mut list) = unit_ref.attr_locations(value)? {
                                while let Some(entry) = list.next()? {
                                    found |= uses_parameter_ref(entry.data, unit.encoding());
                                }
                            }
                            found
                        }
                        None => false,
                    };
                    index.subprograms[i].params.push(Parameter {
                        die,
                        name: string(entry.attr_value(gimli::DW_AT_name)),
                        abstract_origin: reference(entry.attr_value(gimli::DW_AT_abstract_origin)),
                        const_value: entry.attr(gimli::DW_AT_const_value).is_some(),
                        entry_register,
                        has_location,
                        parameter_ref,
                    });
                }
                Frame::Other
            }
            gimli::DW_TAG_inlined_subroutine => {
                let origin = reference(entry.attr_value(gimli::DW_AT_abstract_origin));
                match (origin, innermost_subprogram()) {
                    (Some(origin), Some(container)) => {
                        let chain = stack
                            .iter()
                            .filter_map(|(_, f)| match f {
                                Frame::Inlined { origin, .. } => Some(*origin),
                                _ => None,
                            })
                            .collect();
                        let parent = stack.iter().rev().find_map(|(_, f)| match f {
                            Frame::Inlined { site, .. } => Some(*site),
                            _ => None,
                        });
                        index.inline_sites.push(InlineSite {
                            origin,
                            container,
                            chain,
                            parent,
                            call_file: file(entry.attr_value(gimli::DW_AT_call_file)),
                            call_line: udata(entry.attr_value(gimli::DW_AT_call_line)),
                            ranges: ranges()?,
                        });
                        Frame::Inlined {
                            origin,
                            site: index.inline_sites.len() - 1,
                        }
                    }
                    _ => Frame::Other,
                }
            }
            gimli::DW_TAG_call_site | gimli::DW_TAG_GNU_call_site => {
                let callee = reference(entry.attr_value(gimli::DW_AT_call_origin))
                    .or_else(|| reference(entry.attr_value(gimli::DW_AT_abstract_origin)));
                if let (Some(callee), Some(caller)) = (callee, innermost_subprogram()) {
                    let inlined_in = stack.iter().rev().find_map(|(_, f)| match f {
                        Frame::Inlined { origin, .. } => Some(*origin),
                        _ => None,
                    });
                    index.call_sites.push(CallSite {
                        caller,
                        inlined_in,
                        callee,
                        tail_call: entry.attr(gimli::DW_AT_call_tail_call).is_some()
                            || entry.attr(gimli::DW_AT_GNU_tail_call).is_some(),
                    });
                }
                Frame::Other
            }
            _ => Frame::Other,
        };
        if entry.has_children() {
            stack.push((depth, frame));
        }
    }
    read_line_rows(unit, &files, index, file_ids)
}

/// Turns the unit's line program into address ranges per file:line.
fn read_line_rows(
    unit: &gimli::Unit<Reader<'_>>,
    files: &HashMap<u64, String>,
    index: &mut DwarfIndex,
    file_ids: &mut HashMap<String, u32>,
) -> gimli::Result<()> {
    let Some(program) = unit.line_program.clone() else {
        return Ok(());
    };
    let mut interned: HashMap<u64, u32> = HashMap::new();
    let mut file_id = |index: &mut DwarfIndex, file: u64| -> Option<u32> {
        if let Some(id) = interned.get(&file) {
            return Some(*id);
        }
        let name = files.get(&file)?;
        let id = match file_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(index.files.len()).ok()?;
                index.files.push(name.clone());
                file_ids.insert(name.clone(), id);
                id
            }
        };
        interned.insert(file, id);
        Some(id)
    };
    let mut rows = program.rows();
    // The row whose code runs until the next row's address.
    let mut open: Option<(u64, u64, u32)> = None;
    while let Some((_, row)) = rows.next_row()? {
        let address = row.address();
        if let Some((start, file, line)) = open.take() {
            if address > start && line > 0 {
                if let Some(file) = file_id(index, file) {
                    index.lines.push(LineRange {
                        file,
                        line,
                        start,
                        end: address,
                    });
                }
            }
        }
        if !row.end_sequence() {
            let line = row
                .line()
                .map_or(0, |l| u32::try_from(l.get()).unwrap_or(0));
            open = Some((address, row.file_index(), line));
        }
    }
    Ok(())
}

fn uses_parameter_ref(expr: gimli::Expression<Reader<'_>>, encoding: gimli::Encoding) -> bool {
    let mut ops = expr.operations(encoding);
    while let Ok(Some(op)) = ops.next() {
        if matches!(op, gimli::Operation::ParameterRef { .. }) {
            return true;
        }
    }
    false
}

/// x86-64 System V: the DWARF numbers of the registers that carry the first six integer
/// or pointer arguments (rdi, rsi, rdx, rcx, r8, r9).
const X86_64_INT_ARGS: [u16; 6] = [5, 4, 1, 2, 8, 9];
/// DWARF numbers of the x86-64 registers, for messages.
const X86_64_NAMES: [&str; 17] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip",
];

fn register_name(reg: u16) -> String {
    X86_64_NAMES
        .get(usize::from(reg))
        .map_or_else(|| format!("DWARF register {reg}"), |n| (*n).to_owned())
}

/// How an out-of-line clone's calling convention differs from the function it was made
/// from, or `None` when its DWARF shows none. A clone whose convention changed cannot be
/// replaced by a function with the original signature: its callers must be patched.
///
/// Evidence, in the order checked: a parameter replaced by a constant
/// (`DW_AT_const_value`); a parameter GCC removed (`DW_OP_GNU_parameter_ref`, or absent
/// from the clone); a parameter arriving in another x86-64 argument register than its
/// declared position gives it.
pub fn clone_abi_change(clone: &Subprogram, origin: &Subprogram) -> Option<String> {
    let name = |p: &Parameter| p.name.clone().unwrap_or_else(|| "?".to_owned());
    for param in &clone.params {
        if param.const_value {
            return Some(format!(
                "parameter `{}` was replaced by a constant",
                name(param)
            ));
        }
        if param.parameter_ref {
            return Some(format!("parameter `{}` was removed (IPA-SRA)", name(param)));
        }
    }
    for declared in &origin.params {
        if !clone
            .params
            .iter()
            .any(|p| p.abstract_origin == Some(declared.die))
        {
            return Some(format!("parameter `{}` was removed", name(declared)));
        }
    }
    // Integer and pointer parameters take the argument registers in declared order;
    // floating-point ones (xmm, DWARF 17 and up) travel apart and take no slot. A
    // parameter without a single-register entry location is assumed to take its slot.
    // Aggregates passed by value in several registers are not modelled.
    let mut slot = 0;
    for declared in &origin.params {
        let actual = clone
            .params
            .iter()
            .find(|p| p.abstract_origin == Some(declared.die))
            .and_then(|p| p.entry_register);
        match actual {
            Some(reg) if usize::from(reg) >= X86_64_NAMES.len() => continue,
            Some(reg) => {
                if let Some(&expected) = X86_64_INT_ARGS.get(slot) {
                    if reg != expected {
                        return Some(format!(
                            "parameter `{}` arrives in {} where its position expects {}",
                            name(declared),
                            register_name(reg),
                            register_name(expected)
                        ));
                    }
                }
            }
            None => {}
        }
        slot += 1;
    }
    None
}

/// `DW_OP_reg0` .. `DW_OP_reg31`, or `DW_OP_regx N`, as the whole expression.
fn single_register(expr: Reader<'_>) -> Option<u16> {
    let bytes = expr.slice();
    match bytes {
        [op] if (0x50..=0x6f).contains(op) => Some(u16::from(op - 0x50)),
        [0x90, rest @ ..] => {
            let mut value: u64 = 0;
            for (i, b) in rest.iter().enumerate() {
                value |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return u16::try_from(value).ok();
                }
            }
            None
        }
        _ => None,
    }
}

/// The unit's file names by line-table index, as `directory/name`.
fn file_table<'d>(unit: &gimli::UnitRef<'_, Reader<'d>>) -> HashMap<u64, String> {
    let mut files = HashMap::new();
    let Some(program) = &unit.line_program else {
        return files;
    };
    let header = program.header();
    let text = |value| {
        unit.attr_string(value)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    };
    // DWARF 5 numbers files from 0, earlier versions from 1; `file` knows which.
    let count = header.file_names().len() as u64;
    for i in 0..=count {
        let Some(entry) = header.file(i) else {
            continue;
        };
        let Some(name) = text(entry.path_name()) else {
            continue;
        };
        let path = match entry.directory(header).and_then(text) {
            Some(dir) if !name.starts_with('/') && !dir.is_empty() => format!("{dir}/{name}"),
            _ => name,
        };
        files.insert(i, path);
    }
    files
}

/// Concrete instances carry no names of their own: take their abstract origin's (the
/// function's name, declaration, `inline` and `external`, and each parameter's name).
fn resolve_names(index: &mut DwarfIndex) {
    index.subprograms.sort_by_key(|s| s.die);
    let subprograms = &index.subprograms;
    let position = |die: DieOffset| subprograms.binary_search_by_key(&die, |s| s.die).ok();
    let param_names: HashMap<DieOffset, &str> = subprograms
        .iter()
        .filter(|s| s.is_abstract || s.declaration)
        .flat_map(|s| s.params.iter())
        .filter_map(|p| Some((p.die, p.name.as_deref()?)))
        .collect();
    // (subprogram, its origin, the names of its parameters from their origins)
    type Update = (usize, usize, Vec<Option<String>>);
    let updates: Vec<Update> = subprograms
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let origin = position(s.abstract_origin?)?;
            let params = s
                .params
                .iter()
                .map(|p| match &p.name {
                    Some(_) => None,
                    None => p
                        .abstract_origin
                        .and_then(|o| param_names.get(&o))
                        .map(|name| (*name).to_owned()),
                })
                .collect();
            Some((i, origin, params))
        })
        .collect();
    for (i, origin, params) in updates {
        let (name, file, line, declared, external) = {
            let o = &index.subprograms[origin];
            (
                o.name.clone(),
                o.decl_file.clone(),
                o.decl_line,
                o.declared_inline,
                o.external,
            )
        };
        let subprogram = &mut index.subprograms[i];
        if subprogram.name.is_none() {
            subprogram.name = name;
        }
        if subprogram.decl_file.is_none() {
            subprogram.decl_file = file;
            subprogram.decl_line = line;
        }
        subprogram.declared_inline |= declared;
        subprogram.external |= external;
        for (param, name) in subprogram.params.iter_mut().zip(params) {
            if name.is_some() {
                param.name = name;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(die: DieOffset, name: &str, origin: Option<DieOffset>, reg: Option<u16>) -> Parameter {
        Parameter {
            die,
            name: Some(name.to_owned()),
            abstract_origin: origin,
            const_value: false,
            entry_register: reg,
            has_location: reg.is_some(),
            parameter_ref: false,
        }
    }

    fn subprogram(params: Vec<Parameter>) -> Subprogram {
        Subprogram {
            die: 0,
            unit: 0,
            name: Some("f".into()),
            linkage_name: None,
            decl_file: None,
            decl_line: 0,
            declared_inline: false,
            is_abstract: false,
            abstract_origin: None,
            declaration: false,
            external: false,
            ranges: Vec::new(),
            params,
        }
    }

    fn origin() -> Subprogram {
        subprogram(vec![
            param(1, "a", None, None),
            param(2, "b", None, None),
            param(3, "c", None, None),
        ])
    }

    #[test]
    fn a_parameter_in_another_register_than_its_position_is_an_abi_change() {
        // c arrives in rsi (4): b's slot. The clone takes (a, c).
        let clone = subprogram(vec![
            param(11, "a", Some(1), Some(5)),
            param(12, "b", Some(2), None),
            param(13, "c", Some(3), Some(4)),
        ]);
        assert_eq!(
            clone_abi_change(&clone, &origin()).as_deref(),
            Some("parameter `c` arrives in rsi where its position expects rdx")
        );
    }

    #[test]
    fn the_declared_registers_are_no_change() {
        let clone = subprogram(vec![
            param(11, "a", Some(1), Some(5)),
            param(12, "b", Some(2), Some(4)),
            param(13, "c", Some(3), Some(1)),
        ]);
        assert_eq!(clone_abi_change(&clone, &origin()), None);
    }

    #[test]
    fn floating_point_parameters_take_no_integer_slot() {
        // (a: int, x: double, c: int): c is the second integer argument, in rsi.
        let clone = subprogram(vec![
            param(11, "a", Some(1), Some(5)),
            param(12, "x", Some(2), Some(17)),
            param(13, "c", Some(3), Some(4)),
        ]);
        assert_eq!(clone_abi_change(&clone, &origin()), None);
    }

    #[test]
    fn a_missing_parameter_is_an_abi_change() {
        let clone = subprogram(vec![
            param(11, "a", Some(1), Some(5)),
            param(13, "c", Some(3), Some(4)),
        ]);
        assert_eq!(
            clone_abi_change(&clone, &origin()).as_deref(),
            Some("parameter `b` was removed")
        );
    }

    #[test]
    fn register_expressions_decode() {
        let reg =
            |bytes: &'static [u8]| single_register(EndianSlice::new(bytes, RunTimeEndian::Little));
        assert_eq!(reg(&[0x55]), Some(5));
        assert_eq!(reg(&[0x90, 0x11]), Some(17));
        assert_eq!(reg(&[0x90, 0x81, 0x01]), Some(129));
        assert_eq!(reg(&[0x55, 0x9f]), None);
        assert_eq!(reg(&[]), None);
    }
}
