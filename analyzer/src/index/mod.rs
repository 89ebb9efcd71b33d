//! The on-disk index of one kernel build: what the impact analysis needs from vmlinux and
//! its modules, in a few megabytes that load in milliseconds.
//!
//! Reading a distribution vmlinux's DWARF takes seconds and a gigabyte; a reviewer asks
//! many questions of the same build. [`ObjectIndex::build`] turns one object's symbol
//! table and debug information into compact tables keyed by function, not by DIE:
//!
//! - [`Function`]s: one per name and declaration, however many compilation units carry
//!   an abstract instance of it (a header inline has one per unit that inlined it).
//!   Declarations of external functions are merged into the function they declare, so a
//!   call through another unit's prototype finds its callee.
//! - [`Instance`]s: out-of-line code (the function itself or a clone), with the change of
//!   calling convention a clone's DWARF shows, worked out once here.
//! - [`InlineSite`]s: every inlined copy, its container, the copy it sits in.
//! - [`Call`]s: direct calls from one instance to a function or to a specific clone.
//! - [`LinePlace`]s: for each source file:line, the instance or inlined copy its code
//!   went into.
//!
//! A [`KernelIndex`] holds vmlinux and any modules, each with its GNU build-id, and is
//! written with [`KernelIndex::to_bytes`]: a magic, a format version, then one section per
//! object with its CRC-32 (the tables, postcard). A file with another magic or version, or
//! a damaged section, is refused with a clear error, never misread.
//!
//! The parts: `build` (tables from the debug information), `lines` (the line table
//! reduced to places), `stored` and `varint` (the on-disk form).

mod build;
mod lines;
mod stored;
mod varint;

use build::Builder;
use lines::LineFile;
pub use lines::LineTable;

use crate::dwarf::{self, path_matches, DwarfError, DwarfIndex, SkippedUnit};
use crate::symbols::{self, FunctionSymbol, FunctionTable, SymbolError};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The first bytes of an index file.
pub const MAGIC: [u8; 8] = *b"GRAFTIDX";
/// The layout version; bumped on any incompatible change to the tables.
pub const FORMAT_VERSION: u32 = 3;

/// A function of the source: a name and where it is declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Name.
    pub name: String,
    /// Declaring file, an index into [`ObjectIndex::files`].
    pub decl_file: Option<u32>,
    /// Declaring line (0 when unknown).
    pub decl_line: u32,
    /// Declared `inline`.
    pub declared_inline: bool,
    /// Visible to other compilation units.
    pub external: bool,
    /// Defined in this object (it has code or an abstract instance), not only declared.
    pub defined: bool,
}

/// Out-of-line code of a function: the function itself or a clone of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Index into [`ObjectIndex::functions`].
    pub function: u32,
    /// The compilation unit's source file (`DW_AT_name`), an index into
    /// [`ObjectIndex::files`].
    pub unit: Option<u32>,
    /// Address ranges; the first holds the entry.
    pub ranges: Vec<(u64, u64)>,
    /// How its calling convention differs from the function's declaration, for a
    /// clone whose DWARF shows it ([`clone_abi_change`]).
    pub abi_change: Option<String>,
}

impl Instance {
    /// The entry address.
    pub fn entry(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.0)
    }
}

/// An inlined copy of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineSite {
    /// The function inlined, an index into [`ObjectIndex::functions`].
    pub function: u32,
    /// The instance whose code holds the copy.
    pub container: u32,
    /// The inlined copy this one sits in, if any.
    pub parent: Option<u32>,
    /// The file of the inlined call, an index into [`ObjectIndex::files`].
    pub call_file: Option<u32>,
    /// The line of the inlined call.
    pub call_line: u32,
}

/// What a direct call calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Callee {
    /// The function (through its declaration or abstract instance).
    Function(u32),
    /// One out-of-line instance, typically a clone.
    Instance(u32),
}

/// A direct call (`DW_TAG_call_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Call {
    /// The calling instance.
    pub caller: u32,
    /// What is called.
    pub callee: Callee,
    /// A tail call.
    pub tail_call: bool,
}

/// Where code of a source line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Place {
    /// The instance's own code.
    Instance(u32),
    /// An inlined copy (the innermost one holding the code).
    Inlined(u32),
}

/// Code of `file:line` is in `place`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinePlace {
    /// Index into [`ObjectIndex::files`].
    pub file: u32,
    /// Source line.
    pub line: u32,
    /// Where its code is.
    pub place: Place,
}

/// One object (vmlinux or a module) of a kernel build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    /// `vmlinux` or the module name.
    pub name: String,
    /// The GNU build-id, in hex.
    pub build_id: Option<String>,
    /// Every function symbol and whether ftrace can redirect it.
    pub symbols: FunctionTable,
    /// Source files, as the debug information names them.
    pub files: Vec<String>,
    /// Functions, sorted by (name, declaration).
    pub functions: Vec<Function>,
    /// Out-of-line code, sorted by function.
    pub instances: Vec<Instance>,
    /// Inlined copies, by container (an enclosing copy comes before the copies in it).
    pub inline_sites: Vec<InlineSite>,
    /// Direct calls, sorted by callee.
    pub calls: Vec<Call>,
    /// The line table reduced to places.
    pub lines: LineTable,
    /// Positions in [`ObjectIndex::inline_sites`] ordered by the function inlined
    /// (derived, not stored).
    pub sites_by_function: Vec<u32>,
    /// Compilation units that could not be decoded and are not in these tables.
    pub skipped: Vec<SkippedUnit>,
}

/// The indexes of one kernel build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelIndex {
    /// vmlinux first, then the modules in the order of their files' paths.
    pub objects: Vec<ObjectIndex>,
}

/// Why an index could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The symbol table could not be read.
    #[error(transparent)]
    Symbols(#[from] SymbolError),
    /// The debug information could not be read.
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
    /// Not an index file.
    #[error("not a Graftbench index (it does not start with {:?})", String::from_utf8_lossy(&MAGIC))]
    NotAnIndex,
    /// Written by another version of Graftbench.
    #[error("index format version {found}, this Graftbench reads version {FORMAT_VERSION}: rebuild it with `graftbench index`")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The tables are damaged.
    #[error("the index is damaged: {0}")]
    Damaged(String),
}

/// The GNU build-id of an ELF object, in hex, when it has one.
pub fn build_id(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// The name a kernel module goes by (`klp_object.name`): the `name=` of its `.modinfo`,
/// which kbuild writes; `None` for an object without one.
pub fn module_name(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let modinfo = file.section_by_name(".modinfo")?.data().ok()?;
    modinfo
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"name="))
        .and_then(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

impl KernelIndex {
    /// The index file's bytes.
    ///
    /// Layout: the magic, the format version (u32 LE), the number of objects (u32 LE),
    /// then one section per object: its length (u64 LE), the CRC-32 of its bytes (u32 LE)
    /// and its tables. A damaged byte anywhere fails its section's checksum and the file
    /// is refused, rather than decoded into different tables.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.objects.len() as u32).to_le_bytes());
        for object in &self.objects {
            // Serialising plain tables into a Vec cannot fail.
            let section = postcard::to_stdvec(&stored::Object::from(object)).unwrap_or_default();
            out.extend_from_slice(&(section.len() as u64).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&section).to_le_bytes());
            out.extend_from_slice(&section);
        }
        out
    }

    /// Reads an index file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<KernelIndex, IndexError> {
        KernelIndex::from_bytes_where(bytes, |_| true)
    }

    /// Reads only the objects whose debug information names one of `paths` (tree-relative
    /// source paths, as in a fix): the others cannot hold code the fix changes. A
    /// distribution kernel's index holds thousands of modules; a fix touches one or two.
    pub fn from_bytes_for_paths(bytes: &[u8], paths: &[&str]) -> Result<KernelIndex, IndexError> {
        KernelIndex::from_bytes_where(bytes, |files| {
            files
                .iter()
                .any(|file| paths.iter().any(|path| path_matches(file, path)))
        })
    }

    /// The name and build-id of each object, in order, without reading the tables.
    pub fn build_ids(bytes: &[u8]) -> Result<Vec<(String, Option<String>)>, IndexError> {
        Ok(KernelIndex::stored_objects(bytes)?
            .iter()
            .map(|o| (o.name().to_owned(), o.build_id().map(str::to_owned)))
            .collect())
    }

    fn stored_objects(bytes: &[u8]) -> Result<Vec<stored::ObjectIn<'_>>, IndexError> {
        let Some(rest) = bytes.strip_prefix(&MAGIC) else {
            return Err(IndexError::NotAnIndex);
        };
        let (version, rest) = rest.split_at_checked(4).ok_or(IndexError::NotAnIndex)?;
        let found = u32::from_le_bytes(version.try_into().map_err(|_| IndexError::NotAnIndex)?);
        if found != FORMAT_VERSION {
            return Err(IndexError::Version { found });
        }
        let damaged = IndexError::Damaged;
        let (count, mut rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("the file ends before the object count".into()))?;
        let count = u32::from_le_bytes(*count) as usize;
        // Each section takes at least its 12-byte header: a larger count is damage.
        if count > rest.len() / 12 {
            return Err(damaged(format!("{count} objects cannot fit in the file")));
        }
        let mut stored = Vec::with_capacity(count);
        for n in 1..=count {
            let (length, after) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| damaged(format!("object {n} of {count} has no header")))?;
            let (crc, after) = after
                .split_first_chunk::<4>()
                .ok_or_else(|| damaged(format!("object {n} of {count} has no header")))?;
            let (section, after) = usize::try_from(u64::from_le_bytes(*length))
                .ok()
                .and_then(|length| after.split_at_checked(length))
                .ok_or_else(|| damaged(format!("object {n} of {count} runs past the end")))?;
            if crc32fast::hash(section) != u32::from_le_bytes(*crc) {
                return Err(damaged(format!(
                    "object {n} of {count} does not match its checksum"
                )));
            }
            let object: stored::ObjectIn<'_> = postcard::from_bytes(section)
                .map_err(|e| damaged(format!("object {n} of {count}: {e}")))?;
            stored.push(object);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(damaged(format!("{} bytes after the tables", rest.len())));
        }
        Ok(stored)
    }

    /// Reads the objects whose file list `keep` accepts.
    fn from_bytes_where(
        bytes: &[u8],
        keep: impl Fn(&[&str]) -> bool,
    ) -> Result<KernelIndex, IndexError> {
        let objects = KernelIndex::stored_objects(bytes)?
            .into_iter()
            // An object with units left out may hold the code asked for: kept, so the
            // analysis can say it could not look there.
            .filter(|o| keep(o.files()) || o.has_skipped_units())
            .map(ObjectIndex::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(IndexError::Damaged)?;
        let index = KernelIndex { objects };
        index.check()?;
        Ok(index)
    }

    /// Every cross reference points inside its table, so queries can index freely.
    fn check(&self) -> Result<(), IndexError> {
        for object in &self.objects {
            let damaged = |what: &str| {
                Err(IndexError::Damaged(format!(
                    "{}: {what} points outside its table",
                    object.name
                )))
            };
            let functions = object.functions.len();
            let instances = object.instances.len();
            let sites = object.inline_sites.len();
            let files = object.files.len();
            let file_ok = |f: Option<u32>| f.is_none_or(|f| (f as usize) < files);
            if !object.functions.iter().all(|f| file_ok(f.decl_file)) {
                return damaged("a function's file");
            }
            if !object
                .instances
                .iter()
                .all(|i| (i.function as usize) < functions && file_ok(i.unit))
            {
                return damaged("an instance's function");
            }
            if !object.inline_sites.iter().all(|s| {
                (s.function as usize) < functions
                    && (s.container as usize) < instances
                    && s.parent.is_none_or(|p| (p as usize) < sites)
                    && file_ok(s.call_file)
            }) {
                return damaged("an inline site");
            }
            if !object.calls.iter().all(|c| {
                (c.caller as usize) < instances
                    && match c.callee {
                        Callee::Function(f) => (f as usize) < functions,
                        Callee::Instance(i) => (i as usize) < instances,
                    }
            }) {
                return damaged("a call");
            }
            if !object.lines.files.iter().all(|f| (f.file as usize) < files) {
                return damaged("a line's file");
            }
        }
        Ok(())
    }
}

impl ObjectIndex {
    /// Reads one ELF object (vmlinux or a `.ko` with its debug information) into its
    /// index. `progress` is called with the number of `.debug_info` bytes read so far.
    pub fn build(
        name: &str,
        data: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ObjectIndex, IndexError> {
        let symbols = symbols::read_functions(name, data)?;
        let dwarf = dwarf::read_dwarf_with_progress(name, data, progress)?;
        Ok(ObjectIndex::from_tables(symbols, &dwarf, build_id(data)))
    }

    /// The index of tables already read.
    pub fn from_tables(
        symbols: FunctionTable,
        dwarf: &DwarfIndex,
        build_id: Option<String>,
    ) -> ObjectIndex {
        Builder::new(dwarf).finish(symbols, build_id)
    }

    /// An object that could not be read at all (a damaged module): no tables, and its
    /// whole debug information marked skipped with `error`, so analyses say so.
    pub fn unreadable(name: &str, build_id: Option<String>, error: &str) -> ObjectIndex {
        ObjectIndex {
            name: name.to_owned(),
            build_id,
            symbols: FunctionTable {
                object: name.to_owned(),
                ftrace_table: symbols::FtraceTable::None,
                functions: Vec::new(),
            },
            files: Vec::new(),
            functions: Vec::new(),
            instances: Vec::new(),
            inline_sites: Vec::new(),
            calls: Vec::new(),
            lines: LineTable::from_places(&[]),
            sites_by_function: Vec::new(),
            skipped: vec![SkippedUnit {
                offset: 0,
                name: None,
                error: error.to_owned(),
                rest_of_section: true,
            }],
        }
    }

    /// The files of the debug information that are the tree-relative `path`.
    pub fn files_matching(&self, path: &str) -> Vec<u32> {
        (0..)
            .zip(&self.files)
            .filter(|(_, name)| path_matches(name, path))
            .map(|(i, _)| i)
            .collect()
    }

    /// Every place code of `path` went, by line.
    pub fn places_in_file(&self, path: &str) -> Result<Vec<(u32, Place)>, IndexError> {
        let mut places = Vec::new();
        for file in self.files_matching(path) {
            for (line, place) in self.lines.file(file)? {
                let valid = match place {
                    Place::Instance(i) => (i as usize) < self.instances.len(),
                    Place::Inlined(s) => (s as usize) < self.inline_sites.len(),
                };
                if !valid {
                    return Err(IndexError::Damaged(format!(
                        "{}: a line's place is out of range",
                        self.name
                    )));
                }
                places.push((line, place));
            }
        }
        places.sort_unstable();
        Ok(places)
    }

    /// Every place code of `path:line` went.
    pub fn places_of_line(&self, path: &str, line: u32) -> Result<Vec<Place>, IndexError> {
        Ok(self
            .places_in_file(path)?
            .into_iter()
            .filter(|&(l, _)| l == line)
            .map(|(_, place)| place)
            .collect())
    }

    /// The function whose source a place's code is.
    pub fn owner(&self, place: Place) -> u32 {
        match place {
            Place::Instance(i) => self.instances[i as usize].function,
            Place::Inlined(s) => self.inline_sites[s as usize].function,
        }
    }

    /// The instance holding a place's code, and the inlined functions around it,
    /// outermost first (the last is the place's own function).
    pub fn container_and_chain(&self, place: Place) -> (u32, Vec<u32>) {
        match place {
            Place::Instance(i) => (i, Vec::new()),
            Place::Inlined(site) => {
                let mut chain = Vec::new();
                let mut at = Some(site);
                let mut container = 0;
                // Parents come before their children; the bound guards damaged input.
                while let Some(s) = at.filter(|_| chain.len() <= self.inline_sites.len()) {
                    let site = &self.inline_sites[s as usize];
                    chain.push(site.function);
                    container = site.container;
                    at = site.parent;
                }
                chain.reverse();
                (container, chain)
            }
        }
    }

    /// The out-of-line instances of function `f`.
    pub fn instances_of(&self, f: u32) -> std::ops::Range<usize> {
        let from = self.instances.partition_point(|i| i.function < f);
        let to = self.instances.partition_point(|i| i.function <= f);
        from..to
    }

    /// The inlined copies of function `f`.
    pub fn inline_sites_of(&self, f: u32) -> impl Iterator<Item = &InlineSite> + '_ {
        let function_of = |&i: &u32| self.inline_sites[i as usize].function;
        let from = self
            .sites_by_function
            .partition_point(|i| function_of(i) < f);
        let to = self
            .sites_by_function
            .partition_point(|i| function_of(i) <= f);
        self.sites_by_function[from..to]
            .iter()
            .map(|&i| &self.inline_sites[i as usize])
    }

    /// The calls to `callee`.
    pub fn calls_to(&self, callee: Callee) -> &[Call] {
        let from = self.calls.partition_point(|c| c.callee < callee);
        let to = self.calls.partition_point(|c| c.callee <= callee);
        &self.calls[from..to]
    }

    /// A function's name.
    pub fn function_name(&self, f: u32) -> &str {
        self.functions
            .get(f as usize)
            .map_or("?", |f| f.name.as_str())
    }

    /// A file's name.
    pub fn file_name(&self, file: Option<u32>) -> &str {
        file.and_then(|f| self.files.get(f as usize))
            .map_or("", String::as_str)
    }
}
/// An object's function symbols by address: how an instance finds its symbol.
pub struct SymbolsByAddress<'a>(HashMap<u64, Vec<&'a FunctionSymbol>>);

impl<'a> SymbolsByAddress<'a> {
    /// The symbols at `address`.
    pub fn at(&self, address: u64) -> &[&'a FunctionSymbol] {
        self.0.get(&address).map_or(&[], Vec::as_slice)
    }

    /// The symbol at an instance's entry (not its `.cold` part, which may share it).
    pub fn of_instance(&self, instance: &Instance) -> Option<&'a FunctionSymbol> {
        let entry = instance.entry()?;
        self.at(entry).iter().find(|f| !f.is_cold_part()).copied()
    }
}

impl ObjectIndex {
    /// Its function symbols by address.
    pub fn symbols_by_address(&self) -> SymbolsByAddress<'_> {
        let mut map: HashMap<u64, Vec<&FunctionSymbol>> = HashMap::new();
        for f in &self.symbols.functions {
            map.entry(f.address).or_default().push(f);
        }
        SymbolsByAddress(map)
    }
}

/// Site positions ordered by function, then position.
fn sites_by_function(sites: &[InlineSite]) -> Vec<u32> {
    // A counting sort: linear, and stable.
    let functions = sites
        .iter()
        .map(|s| s.function as usize + 1)
        .max()
        .unwrap_or(0);
    let mut starts = vec![0u32; functions + 1];
    for site in sites {
        starts[site.function as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![0u32; sites.len()];
    for (i, site) in (0u32..).zip(sites) {
        let slot = &mut starts[site.function as usize];
        order[*slot as usize] = i;
        *slot += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::build::innermost_segments;
    use super::*;

    #[test]
    fn nested_ranges_flatten_to_their_innermost_site() {
        // 0..100 site 0, inside it 10..20 site 1, inside that 12..14 site 2; 200..210 site 3.
        let segments = innermost_segments(vec![
            (10, 20, 1, 1),
            (0, 100, 0, 0),
            (12, 14, 2, 2),
            (200, 210, 0, 3),
        ]);
        assert_eq!(
            segments,
            [
                (0, Some(0)),
                (10, Some(1)),
                (12, Some(2)),
                (14, Some(1)),
                (20, Some(0)),
                (100, None),
                (200, Some(3)),
                (210, None)
            ]
        );
    }

    #[test]
    fn ranges_ending_together_close_together() {
        let segments = innermost_segments(vec![(0, 10, 0, 0), (5, 10, 1, 1)]);
        assert_eq!(segments, [(0, Some(0)), (5, Some(1)), (10, None)]);
    }

    #[test]
    fn the_line_table_survives_its_encoding() {
        let lines = vec![
            LinePlace {
                file: 0,
                line: 7,
                place: Place::Instance(3),
            },
            LinePlace {
                file: 0,
                line: 9,
                place: Place::Inlined(1),
            },
            LinePlace {
                file: 2,
                line: 1,
                place: Place::Instance(0),
            },
        ];
        let index = KernelIndex {
            objects: vec![ObjectIndex {
                name: "vmlinux".into(),
                build_id: None,
                symbols: FunctionTable {
                    object: "vmlinux".into(),
                    ftrace_table: symbols::FtraceTable::None,
                    functions: Vec::new(),
                },
                files: vec!["a.c".into(), "b.c".into(), "c.c".into()],
                functions: vec![Function {
                    name: "f".into(),
                    decl_file: Some(0),
                    decl_line: 1,
                    declared_inline: false,
                    external: true,
                    defined: true,
                }],
                instances: (0..4)
                    .map(|_| Instance {
                        function: 0,
                        unit: None,
                        ranges: vec![(0, 1)],
                        abi_change: None,
                    })
                    .collect(),
                inline_sites: vec![
                    InlineSite {
                        function: 0,
                        container: 0,
                        parent: None,
                        call_file: None,
                        call_line: 0,
                    };
                    2
                ],
                calls: Vec::new(),
                lines: LineTable::from_places(&lines),
                sites_by_function: vec![0, 1],
                skipped: vec![SkippedUnit {
                    offset: 0x1c4,
                    name: Some("d.c".into()),
                    error: "unknown abbreviation code".into(),
                    rest_of_section: false,
                }],
            }],
        };
        let bytes = index.to_bytes();
        assert_eq!(KernelIndex::from_bytes(&bytes).unwrap(), index);
        // Every truncation is an error, none a panic.
        for cut in 0..bytes.len() {
            assert!(
                KernelIndex::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn foreign_files_and_other_versions_are_refused() {
        assert!(matches!(
            KernelIndex::from_bytes(b"\x7fELF\x02\x01"),
            Err(IndexError::NotAnIndex)
        ));
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            KernelIndex::from_bytes(&bytes),
            Err(IndexError::Version { found: 99 })
        ));
    }
}
