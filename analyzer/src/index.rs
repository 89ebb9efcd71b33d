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
//! written with [`KernelIndex::to_bytes`]: a magic, a format version, then the tables
//! (postcard). A file with another magic or version is refused with a clear error, never
//! misread.

use crate::dwarf::{
    self, clone_abi_change, path_matches, DieOffset, DwarfError, DwarfIndex, SkippedUnit,
};
use crate::symbols::{self, FunctionSymbol, FunctionTable, SymbolError};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};

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

/// The line table reduced to places, kept encoded per file: a query decodes only the
/// files it asks about (the whole table is the largest part of an index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    /// Per file with code, in file order: where its rows are in `rows`.
    files: Vec<LineFile>,
    /// Per file, rows of (line, place) as varint differences to the previous row.
    rows: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineFile {
    file: u32,
    start: usize,
    end: usize,
    count: u32,
}

impl LineTable {
    /// Encodes places sorted by file, line and place.
    pub fn from_places(places: &[LinePlace]) -> LineTable {
        let mut table = LineTable::default();
        let mut rows = Blob::new();
        let mut at = 0;
        while at < places.len() {
            let file = places[at].file;
            let start = rows.0.len();
            let (mut line, mut place) = (0i64, 0u64);
            let mut count = 0;
            while let Some(p) = places.get(at).filter(|p| p.file == file) {
                rows.i(i64::from(p.line) - line);
                let code = place_code(p.place);
                rows.i(code.wrapping_sub(place) as i64);
                (line, place) = (i64::from(p.line), code);
                count += 1;
                at += 1;
            }
            table.files.push(LineFile {
                file,
                start,
                end: rows.0.len(),
                count,
            });
        }
        table.rows = rows.0;
        table
    }

    /// How many (file, line, place) rows there are.
    pub fn len(&self) -> usize {
        self.files.iter().map(|f| f.count as usize).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The rows of one file: (line, place), sorted.
    pub fn file(&self, file: u32) -> Result<Vec<(u32, Place)>, IndexError> {
        let Ok(i) = self.files.binary_search_by_key(&file, |f| f.file) else {
            return Ok(Vec::new());
        };
        let entry = self.files[i];
        let damaged = |e: String| IndexError::Damaged(format!("file {file}: {e}"));
        let bytes = self
            .rows
            .get(entry.start..entry.end)
            .ok_or_else(|| damaged("rows outside the table".into()))?;
        let mut rows = Varints::new("line", bytes);
        let mut out = Vec::with_capacity((entry.count as usize).min(bytes.len()));
        let (mut line, mut place) = (0i64, 0u64);
        for _ in 0..entry.count {
            line += rows.i().map_err(damaged)?;
            place = place.wrapping_add(rows.i().map_err(damaged)? as u64);
            let line = u32::try_from(line).map_err(|_| damaged("a line is out of range".into()))?;
            out.push((line, place_of_code(place).map_err(damaged)?));
        }
        rows.finish().map_err(damaged)?;
        Ok(out)
    }

    /// Every row, decoded.
    pub fn all(&self) -> Result<Vec<LinePlace>, IndexError> {
        let mut out = Vec::with_capacity(self.len());
        for entry in &self.files {
            out.extend(
                self.file(entry.file)?
                    .into_iter()
                    .map(|(line, place)| LinePlace {
                        file: entry.file,
                        line,
                        place,
                    }),
            );
        }
        Ok(out)
    }
}

fn place_code(p: Place) -> u64 {
    match p {
        Place::Instance(i) => u64::from(i) << 1,
        Place::Inlined(s) => (u64::from(s) << 1) | 1,
    }
}

fn place_of_code(code: u64) -> Result<Place, String> {
    let id = u32::try_from(code >> 1).map_err(|_| format!("place {code} is out of range"))?;
    Ok(if code & 1 == 0 {
        Place::Instance(id)
    } else {
        Place::Inlined(id)
    })
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

/// The hash rustc uses for its own tables (FxHash): several times faster than SipHash on
/// the integer and short-string keys here. Its weakness, chosen collisions, matters for
/// inputs an attacker writes; these are the user's own kernel build.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

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

/// The identity of a function across compilation units.
type FunctionKey<'a> = (&'a str, Option<&'a str>, u32);

/// Builds the tables of one object from its DWARF tables.
struct Builder<'a> {
    dwarf: &'a DwarfIndex,
    file_ids: FastMap<&'a str, u32>,
    /// The function each subprogram DIE stands for.
    function_of_die: FastMap<DieOffset, u32>,
    functions: Vec<Function>,
}

impl<'a> Builder<'a> {
    fn new(dwarf: &'a DwarfIndex) -> Builder<'a> {
        let file_ids = (0..)
            .zip(&dwarf.files)
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let mut builder = Builder {
            dwarf,
            file_ids,
            function_of_die: FastMap::default(),
            functions: Vec::new(),
        };
        builder.functions();
        builder
    }

    fn file_id(&mut self, name: Option<&'a str>) -> Option<u32> {
        let name = name?;
        if let Some(&id) = self.file_ids.get(name) {
            return Some(id);
        }
        // A declaration file no line table names: files grow at the end.
        let id = u32::try_from(self.file_ids.len()).ok()?;
        self.file_ids.insert(name, id);
        Some(id)
    }

    /// One function per key; external declarations join the one definition of their name.
    fn functions(&mut self) {
        let subprograms = &self.dwarf.subprograms;
        let key = |s: &'a dwarf::Subprogram| -> Option<FunctionKey<'a>> {
            Some((s.name.as_deref()?, s.decl_file.as_deref(), s.decl_line))
        };
        let defines = |s: &dwarf::Subprogram| s.is_abstract || !s.ranges.is_empty();
        let mut external_definitions: FastMap<&str, Vec<FunctionKey<'a>>> = FastMap::default();
        for s in subprograms.iter().filter(|s| s.external && defines(s)) {
            if let Some(k) = key(s) {
                external_definitions.entry(k.0).or_default().push(k);
            }
        }
        for keys in external_definitions.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        let key_of = |s: &'a dwarf::Subprogram| -> Option<FunctionKey<'a>> {
            let own = key(s)?;
            if s.declaration && s.external && !defines(s) {
                if let Some([definition]) = external_definitions.get(own.0).map(Vec::as_slice) {
                    return Some(*definition);
                }
            }
            Some(own)
        };
        let mut by_key: BTreeMap<FunctionKey<'a>, Function> = BTreeMap::new();
        for s in subprograms {
            let Some(k) = key_of(s) else { continue };
            let function = by_key.entry(k).or_insert_with(|| Function {
                name: k.0.to_owned(),
                decl_file: None,
                decl_line: k.2,
                declared_inline: false,
                external: false,
                defined: false,
            });
            function.declared_inline |= s.declared_inline;
            function.external |= s.external;
            function.defined |= defines(s);
        }
        let keys: Vec<FunctionKey<'a>> = by_key.keys().copied().collect();
        let ids: FastMap<FunctionKey<'a>, u32> = keys.iter().copied().zip(0..).collect();
        for s in subprograms {
            if let Some(id) = key_of(s).and_then(|k| ids.get(&k)) {
                self.function_of_die.insert(s.die, *id);
            }
        }
        let mut functions: Vec<Function> = by_key.into_values().collect();
        for (function, k) in functions.iter_mut().zip(keys) {
            function.decl_file = self.file_id(k.1);
        }
        self.functions = functions;
    }

    fn finish(mut self, symbols: FunctionTable, build_id: Option<String>) -> ObjectIndex {
        let dwarf = self.dwarf;
        let unit_files: Vec<Option<u32>> = dwarf
            .units
            .iter()
            .map(|u| self.file_id(Some(u.name.as_str()).filter(|n| !n.is_empty())))
            .collect();
        // Instances, sorted by function and entry.
        let mut instances: Vec<(DieOffset, Instance)> = dwarf
            .subprograms
            .iter()
            .filter(|s| !s.ranges.is_empty())
            .filter_map(|s| {
                let function = *self.function_of_die.get(&s.die)?;
                let abi_change = s
                    .abstract_origin
                    .and_then(|o| dwarf.subprogram(o))
                    .and_then(|origin| clone_abi_change(s, origin));
                Some((
                    s.die,
                    Instance {
                        function,
                        unit: unit_files.get(s.unit).copied().flatten(),
                        ranges: s.ranges.clone(),
                        abi_change,
                    },
                ))
            })
            .collect();
        instances.sort_by_key(|(_, i)| (i.function, i.entry()));
        let instance_of_die: FastMap<DieOffset, u32> = instances
            .iter()
            .zip(0..)
            .map(|((die, _), id)| (*die, id))
            .collect();

        // Inline sites, sorted by function; parents renumbered.
        let mut sites: Vec<(usize, InlineSite)> = Vec::new();
        for (old, site) in dwarf.inline_sites.iter().enumerate() {
            let (Some(&function), Some(&container)) = (
                self.function_of_die.get(&site.origin),
                instance_of_die.get(&site.container),
            ) else {
                continue;
            };
            let call_file = self.file_id(site.call_file.as_deref());
            sites.push((
                old,
                InlineSite {
                    function,
                    container,
                    // Old index for now.
                    parent: site.parent.and_then(|p| u32::try_from(p).ok()),
                    call_file,
                    call_line: site.call_line,
                },
            ));
        }
        sites.sort_by_key(|(old, s)| (s.container, *old));
        let mut new_of_old: FastMap<u32, u32> = FastMap::default();
        for ((old, _), new) in sites.iter().zip(0u32..) {
            if let Ok(old) = u32::try_from(*old) {
                new_of_old.insert(old, new);
            }
        }
        let inline_sites: Vec<InlineSite> = sites
            .into_iter()
            .map(|(_, mut s)| {
                s.parent = s.parent.and_then(|p| new_of_old.get(&p).copied());
                s
            })
            .collect();

        // Calls, sorted by callee.
        let mut calls: Vec<Call> = dwarf
            .call_sites
            .iter()
            .filter_map(|c| {
                let caller = *instance_of_die.get(&c.caller)?;
                let callee = match instance_of_die.get(&c.callee) {
                    Some(&i) => Callee::Instance(i),
                    None => Callee::Function(*self.function_of_die.get(&c.callee)?),
                };
                Some(Call {
                    caller,
                    callee,
                    tail_call: c.tail_call,
                })
            })
            .collect();
        calls.sort_unstable_by_key(|c| (c.callee, c.caller, c.tail_call));
        calls.dedup();

        let lines = LineTable::from_places(&line_places(
            dwarf,
            &instance_of_die,
            &new_of_old,
            Owners {
                functions: &self.functions,
                instances: &instances,
                sites: &inline_sites,
            },
        ));
        let mut files = dwarf.files.clone();
        let mut extra: Vec<(u32, &str)> = self
            .file_ids
            .iter()
            .filter(|(_, &id)| id as usize >= files.len())
            .map(|(name, &id)| (id, *name))
            .collect();
        extra.sort_unstable();
        files.extend(extra.into_iter().map(|(_, name)| name.to_owned()));

        ObjectIndex {
            name: symbols.object.clone(),
            build_id,
            symbols,
            files,
            functions: self.functions,
            instances: instances.into_iter().map(|(_, i)| i).collect(),
            sites_by_function: sites_by_function(&inline_sites),
            inline_sites,
            calls,
            lines,
            skipped: dwarf.skipped.clone(),
        }
    }
}

/// A blob of varints, written as bytes (serde would write a `Vec<u8>` element-wise).
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl Blob {
    fn new() -> Blob {
        Blob(Vec::new())
    }

    fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads a blob back.
struct Varints<'a> {
    what: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Varints<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Varints<'a> {
        Varints { what, bytes, at: 0 }
    }

    fn u(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(format!("the {} table is truncated", self.what));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("the {} table holds an overlong number", self.what))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let v = self.u()?;
        u32::try_from(v).map_err(|_| format!("the {} table holds {v}, out of range", self.what))
    }

    fn i(&mut self) -> Result<i64, String> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn finish(self) -> Result<(), String> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!("the {} table has bytes left over", self.what))
        }
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

/// The tables that say whose source a place is.
struct Owners<'t> {
    functions: &'t [Function],
    instances: &'t [(DieOffset, Instance)],
    sites: &'t [InlineSite],
}

impl Owners<'_> {
    /// Whether function `f` is declared in `file` at or before `line`: whether the line
    /// can be part of its body.
    fn holds(&self, f: u32, file: u32, line: u32) -> bool {
        self.functions
            .get(f as usize)
            .is_some_and(|f| f.decl_file == Some(file) && f.decl_line <= line)
    }

    /// From the innermost inlined copy at an address outwards to the instance, the first
    /// whose function's source holds `file:line`. The copies' address ranges are not
    /// exact: GCC schedules instructions of an inlined body outside the ranges it records
    /// for the copy (a store of `__list_add()` landing among `folio_nr_pages()`'s), so the
    /// innermost copy alone would name the wrong function.
    fn place(&self, site: Option<u32>, instance: u32, file: u32, line: u32) -> Option<Place> {
        let mut at = site;
        let mut steps = 0;
        while let Some(s) = at.filter(|_| steps <= self.sites.len()) {
            let inlined = self.sites.get(s as usize)?;
            if self.holds(inlined.function, file, line) {
                return Some(Place::Inlined(s));
            }
            at = inlined.parent;
            steps += 1;
        }
        let function = self.instances.get(instance as usize)?.1.function;
        self.holds(function, file, line)
            .then_some(Place::Instance(instance))
    }
}

/// The line table as places: for each line range, the inlined copy or instance around its
/// first address whose function's source holds the line. A range none of them can hold
/// is left out (the analysis also finds a line's function by its declaration).
fn line_places(
    dwarf: &DwarfIndex,
    instance_of_die: &FastMap<DieOffset, u32>,
    new_site_of_old: &FastMap<u32, u32>,
    owners: Owners<'_>,
) -> Vec<LinePlace> {
    // Every instance range, by start; instances do not overlap.
    let mut code: Vec<(u64, u64, u32)> = dwarf
        .subprograms
        .iter()
        .filter_map(|s| Some((s, *instance_of_die.get(&s.die)?)))
        .flat_map(|(s, id)| s.ranges.iter().map(move |&(a, b)| (a, b, id)))
        .collect();
    code.sort_unstable();
    // Every inline site range with its depth, flattened into segments that each name the
    // innermost copy covering them.
    let mut site_ranges: Vec<(u64, u64, usize, u32)> = Vec::new();
    for (old, site) in dwarf.inline_sites.iter().enumerate() {
        let Some(&new) = u32::try_from(old)
            .ok()
            .and_then(|o| new_site_of_old.get(&o))
        else {
            continue;
        };
        for &(a, b) in &site.ranges {
            site_ranges.push((a, b, site.chain.len(), new));
        }
    }
    let segments = innermost_segments(site_ranges);

    let find_code = |address: u64| {
        let i = code.partition_point(|&(start, _, _)| start <= address);
        let (_, end, id) = *code.get(i.checked_sub(1)?)?;
        (address < end).then_some(id)
    };
    let find_site = |address: u64| {
        let i = segments.partition_point(|&(start, _)| start <= address);
        segments.get(i.checked_sub(1)?)?.1
    };
    let mut places: Vec<LinePlace> = dwarf
        .lines
        .iter()
        .filter_map(|range| {
            let instance = find_code(range.start)?;
            let place = owners.place(find_site(range.start), instance, range.file, range.line)?;
            Some(LinePlace {
                file: range.file,
                line: range.line,
                place,
            })
        })
        .collect();
    places.sort_unstable();
    places.dedup();
    places
}

/// Nested ranges `(start, end, depth, site)` as sorted, non-overlapping segments
/// `(start, innermost site or None)`: each segment runs to the next one's start.
fn innermost_segments(mut ranges: Vec<(u64, u64, usize, u32)>) -> Vec<(u64, Option<u32>)> {
    // Outer ranges first where several start together.
    ranges.sort_unstable_by_key(|&(start, end, depth, _)| (start, std::cmp::Reverse(end), depth));
    let mut segments: Vec<(u64, Option<u32>)> = Vec::with_capacity(ranges.len() * 2);
    let mut open: Vec<(u64, u32)> = Vec::new(); // (end, site), innermost last
    let close_until = |open: &mut Vec<(u64, u32)>, segments: &mut Vec<(u64, Option<u32>)>, at| {
        while let Some(&(end, _)) = open.last() {
            if end > at {
                break;
            }
            open.pop();
            segments.push((end, open.last().map(|&(_, s)| s)));
        }
    };
    for (start, end, _, site) in ranges {
        close_until(&mut open, &mut segments, start);
        segments.push((start, Some(site)));
        open.push((end, site));
    }
    close_until(&mut open, &mut segments, u64::MAX);
    // Several boundaries at one address: the last one pushed holds from there on.
    let mut flat: Vec<(u64, Option<u32>)> = Vec::with_capacity(segments.len());
    for (start, site) in segments {
        match flat.last_mut() {
            Some(last) if last.0 == start => last.1 = site,
            _ => flat.push((start, site)),
        }
    }
    flat.sort_by_key(|&(start, _)| start);
    flat
}

/// The on-disk form. Strings are stored once each and borrowed on reading; every other
/// table is one blob of variable-length integers, row by row, with sorted fields as
/// differences to the previous row, so most numbers take one or two bytes. Reading
/// walks the blobs once, straight into the final tables, and checks every count and
/// reference: damage is an error, never a panic or a wrong answer.
mod stored {
    use super::{
        sites_by_function, Blob, Call, Callee, Function, InlineSite, Instance, LineFile, LineTable,
        ObjectIndex, Varints,
    };
    use crate::dwarf::SkippedUnit;
    use crate::symbols::{split_clone_name, Binding, FtraceTable, FunctionSymbol, FunctionTable};
    use serde::{Deserialize, Serialize};
    use std::collections::HashMap;

    /// Written by [`Object::from`], read as [`ObjectIn`]: the same fields in the same order.
    #[derive(Serialize)]
    pub(super) struct Object {
        name: String,
        build_id: Option<String>,
        ftrace_table: FtraceTable,
        files: Vec<String>,
        sym_names: Vec<String>,
        sym_sections: Vec<String>,
        /// section, address delta, size, binding | ftrace entry << 2 | exported << 3, sympos
        symbols: Blob,
        fn_name_rests: Vec<String>,
        /// shared prefix with the previous name, decl file + 1, decl line,
        /// declared_inline | external << 1 | defined << 2
        functions: Blob,
        instance_count: u32,
        /// function delta, unit file + 1, range count, (start delta, length) per range
        instances: Blob,
        abi_changes: Vec<(u32, String)>,
        site_count: u32,
        /// container delta, function, own - parent position (0: none), call file + 1
        /// delta, call line delta
        sites: Blob,
        call_count: u32,
        /// callee delta (a function's id, or 2^32 + an instance's), caller << 1 | tail
        calls: Blob,
        /// Per file with code: file delta, byte length of its rows, row count.
        line_files: Blob,
        /// [`LineTable`]'s rows.
        line_rows: Blob,
        skipped: Vec<SkippedUnit>,
    }

    #[derive(Deserialize)]
    pub(super) struct ObjectIn<'a> {
        name: &'a str,
        build_id: Option<&'a str>,
        ftrace_table: FtraceTable,
        files: Vec<&'a str>,
        sym_names: Vec<&'a str>,
        sym_sections: Vec<&'a str>,
        symbols: &'a [u8],
        fn_name_rests: Vec<&'a str>,
        functions: &'a [u8],
        instance_count: u32,
        instances: &'a [u8],
        abi_changes: Vec<(u32, &'a str)>,
        site_count: u32,
        sites: &'a [u8],
        call_count: u32,
        calls: &'a [u8],
        line_files: &'a [u8],
        line_rows: &'a [u8],
        skipped: Vec<SkippedUnit>,
    }

    impl<'a> ObjectIn<'a> {
        pub(super) fn name(&self) -> &'a str {
            self.name
        }

        pub(super) fn build_id(&self) -> Option<&'a str> {
            self.build_id
        }

        pub(super) fn files(&self) -> &[&'a str] {
            &self.files
        }

        pub(super) fn has_skipped_units(&self) -> bool {
            !self.skipped.is_empty()
        }
    }

    fn delta(now: u64, before: u64) -> i64 {
        now.wrapping_sub(before) as i64
    }

    /// Ordered as [`Callee`] is (functions first), so the sorted column only grows.
    fn callee_code(c: Callee) -> u64 {
        match c {
            Callee::Function(f) => u64::from(f),
            Callee::Instance(i) => (1 << 32) | u64::from(i),
        }
    }

    fn count(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    impl From<&ObjectIndex> for Object {
        fn from(o: &ObjectIndex) -> Object {
            let mut sym_sections: Vec<String> = Vec::new();
            let mut section_ids: HashMap<&str, u64> = HashMap::new();
            let mut symbols = Blob::new();
            let mut address = 0;
            for f in &o.symbols.functions {
                let next = section_ids.len() as u64;
                let id = *section_ids.entry(f.section.as_str()).or_insert_with(|| {
                    sym_sections.push(f.section.clone());
                    next
                });
                symbols.u(id);
                symbols.i(delta(f.address, address));
                address = f.address;
                symbols.u(f.size);
                let binding = match f.binding {
                    Binding::Local => 0,
                    Binding::Global => 1,
                    Binding::Weak => 2,
                };
                symbols
                    .u(binding | (u64::from(f.ftrace_entry) << 2) | (u64::from(f.exported) << 3));
                symbols.u(u64::from(f.old_sympos));
            }

            let mut functions = Blob::new();
            let mut fn_name_rests = Vec::with_capacity(o.functions.len());
            let mut previous = "";
            for f in &o.functions {
                let shared = previous
                    .bytes()
                    .zip(f.name.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                // Cut on a character boundary so both parts stay UTF-8.
                let shared = (0..=shared)
                    .rev()
                    .find(|&n| f.name.is_char_boundary(n))
                    .unwrap_or(0);
                functions.u(shared as u64);
                fn_name_rests.push(f.name[shared..].to_owned());
                previous = &f.name;
                functions.u(f.decl_file.map_or(0, |f| u64::from(f) + 1));
                functions.u(u64::from(f.decl_line));
                functions.u(u64::from(f.declared_inline)
                    | (u64::from(f.external) << 1)
                    | (u64::from(f.defined) << 2));
            }

            let mut instances = Blob::new();
            let mut abi_changes = Vec::new();
            let (mut function, mut start) = (0, 0);
            for (i, instance) in (0..).zip(&o.instances) {
                instances.i(i64::from(instance.function) - i64::from(function));
                function = instance.function;
                instances.u(instance.unit.map_or(0, |u| u64::from(u) + 1));
                instances.u(instance.ranges.len() as u64);
                for &(a, b) in &instance.ranges {
                    instances.i(delta(a, start));
                    instances.u(b.wrapping_sub(a));
                    start = a;
                }
                if let Some(change) = &instance.abi_change {
                    abi_changes.push((i, change.clone()));
                }
            }

            let mut sites = Blob::new();
            let (mut container, mut file, mut line) = (0, 0, 0);
            for (i, site) in (0u32..).zip(&o.inline_sites) {
                sites.i(i64::from(site.container) - i64::from(container));
                container = site.container;
                sites.u(u64::from(site.function));
                sites.i(site.parent.map_or(0, |p| i64::from(i) - i64::from(p)));
                let f = site.call_file.map_or(0, |f| i64::from(f) + 1);
                sites.i(f - file);
                file = f;
                sites.i(i64::from(site.call_line) - line);
                line = i64::from(site.call_line);
            }

            let mut calls = Blob::new();
            let mut callee = 0;
            for call in &o.calls {
                let code = callee_code(call.callee);
                calls.i(delta(code, callee));
                callee = code;
                calls.u((u64::from(call.caller) << 1) | u64::from(call.tail_call));
            }

            let mut line_files = Blob::new();
            let mut file = 0;
            for f in &o.lines.files {
                line_files.u(u64::from(f.file - file));
                file = f.file;
                line_files.u((f.end - f.start) as u64);
                line_files.u(u64::from(f.count));
            }

            Object {
                name: o.name.clone(),
                build_id: o.build_id.clone(),
                ftrace_table: o.symbols.ftrace_table,
                files: o.files.clone(),
                sym_names: o.symbols.functions.iter().map(|f| f.name.clone()).collect(),
                sym_sections,
                symbols,
                fn_name_rests,
                functions,
                instance_count: count(o.instances.len()),
                instances,
                abi_changes,
                site_count: count(o.inline_sites.len()),
                sites,
                call_count: count(o.calls.len()),
                calls,
                line_files,
                line_rows: Blob(o.lines.rows.clone()),
                skipped: o.skipped.clone(),
            }
        }
    }

    /// Adds a signed delta to an unsigned running value, refusing to leave `u32`.
    fn step(value: u32, by: i64, what: &str) -> Result<u32, String> {
        u32::try_from(i64::from(value) + by).map_err(|_| format!("a {what} is out of range"))
    }

    impl TryFrom<ObjectIn<'_>> for ObjectIndex {
        type Error = String;

        fn try_from(s: ObjectIn<'_>) -> Result<ObjectIndex, String> {
            let object = s.name;
            let damaged = |what: String| format!("{object}: {what}");
            // Each row takes at least one byte per field: a count beyond that is damage,
            // caught before anything is allocated for it.
            let plausible = |count: u32, bytes: &[u8], fields: usize| -> Result<usize, String> {
                let count = count as usize;
                if count.saturating_mul(fields) > bytes.len() {
                    Err(damaged(format!(
                        "{count} rows cannot fit in {} bytes",
                        bytes.len()
                    )))
                } else {
                    Ok(count)
                }
            };

            // Two independent halves, decoded on two cores: the strings of the symbol
            // and function tables, and the numeric tables.
            let strings = || -> Result<(Vec<FunctionSymbol>, Vec<Function>), String> {
                let mut rows = Varints::new("symbol", s.symbols);
                let mut functions_out = Vec::with_capacity(s.sym_names.len());
                let mut address = 0u64;
                for name in &s.sym_names {
                    let section = s
                        .sym_sections
                        .get(rows.u()? as usize)
                        .ok_or_else(|| damaged("a symbol's section is out of range".into()))?;
                    address = address.wrapping_add(rows.i()? as u64);
                    let size = rows.u()?;
                    let flags = rows.u()?;
                    let binding = match flags & 3 {
                        0 => Binding::Local,
                        1 => Binding::Global,
                        2 => Binding::Weak,
                        _ => return Err(damaged("a symbol's binding is unknown".into())),
                    };
                    let (base, clone) = split_clone_name(name);
                    functions_out.push(FunctionSymbol {
                        name: (*name).to_owned(),
                        base_name: base.to_owned(),
                        clone,
                        address,
                        size,
                        section: (*section).to_owned(),
                        binding,
                        ftrace_entry: flags & 4 != 0,
                        exported: flags & 8 != 0,
                        old_sympos: rows.u32()?,
                    });
                }
                rows.finish().map_err(damaged)?;

                let mut rows = Varints::new("function", s.functions);
                let mut functions: Vec<Function> = Vec::with_capacity(s.fn_name_rests.len());
                for rest in &s.fn_name_rests {
                    let shared = rows.u()? as usize;
                    let prefix = functions
                        .last()
                        .map_or("", |f| f.name.as_str())
                        .get(..shared)
                        .ok_or_else(|| {
                            damaged("a function name's shared prefix is too long".into())
                        })?;
                    let mut name = String::with_capacity(prefix.len() + rest.len());
                    name.push_str(prefix);
                    name.push_str(rest);
                    let decl_file = rows.u32()?.checked_sub(1);
                    let decl_line = rows.u32()?;
                    let flags = rows.u()?;
                    functions.push(Function {
                        name,
                        decl_file,
                        decl_line,
                        declared_inline: flags & 1 != 0,
                        external: flags & 2 != 0,
                        defined: flags & 4 != 0,
                    });
                }
                rows.finish().map_err(damaged)?;
                Ok((functions_out, functions))
            };
            type Numbers = (Vec<Instance>, Vec<InlineSite>, Vec<Call>, LineTable);
            let numbers = || -> Result<Numbers, String> {
                let mut rows = Varints::new("instance", s.instances);
                let n = plausible(s.instance_count, s.instances, 2)?;
                let mut instances = Vec::with_capacity(n);
                let (mut function, mut start) = (0u32, 0u64);
                for _ in 0..n {
                    function = step(function, rows.i()?, "instance's function").map_err(damaged)?;
                    let unit = rows.u32()?.checked_sub(1);
                    let ranges_count = rows.u()? as usize;
                    let mut ranges = Vec::with_capacity(ranges_count.min(64));
                    for _ in 0..ranges_count {
                        start = start.wrapping_add(rows.i()? as u64);
                        ranges.push((start, start.wrapping_add(rows.u()?)));
                    }
                    instances.push(Instance {
                        function,
                        unit,
                        ranges,
                        abi_change: None,
                    });
                }
                rows.finish().map_err(damaged)?;
                for &(i, change) in &s.abi_changes {
                    instances
                        .get_mut(i as usize)
                        .ok_or_else(|| damaged("an ABI change names no instance".into()))?
                        .abi_change = Some(change.to_owned());
                }

                let mut rows = Varints::new("inline site", s.sites);
                let n = plausible(s.site_count, s.sites, 5)?;
                let mut inline_sites = Vec::with_capacity(n);
                let (mut container, mut file, mut line) = (0u32, 0u32, 0u32);
                for i in 0..n {
                    container = step(container, rows.i()?, "site's container").map_err(damaged)?;
                    let function = rows.u32()?;
                    // Checked here, not only in `check`: the order by function below
                    // allocates by the largest one.
                    if function as usize >= s.fn_name_rests.len() {
                        return Err(damaged("a site's function is out of range".into()));
                    }
                    let parent = match rows.i()? {
                        0 => None,
                        d => Some(step(count(i), -d, "site's parent").map_err(damaged)?),
                    };
                    file = step(file, rows.i()?, "site's call file").map_err(damaged)?;
                    line = step(line, rows.i()?, "site's call line").map_err(damaged)?;
                    inline_sites.push(InlineSite {
                        function,
                        container,
                        parent,
                        call_file: file.checked_sub(1),
                        call_line: line,
                    });
                }
                rows.finish().map_err(damaged)?;

                let mut rows = Varints::new("call", s.calls);
                let n = plausible(s.call_count, s.calls, 2)?;
                let mut calls = Vec::with_capacity(n);
                let mut callee = 0u64;
                for _ in 0..n {
                    callee = callee.wrapping_add(rows.i()? as u64);
                    let id = (callee & 0xffff_ffff) as u32;
                    let callee = match callee >> 32 {
                        0 => Callee::Function(id),
                        1 => Callee::Instance(id),
                        _ => return Err(damaged("a callee is out of range".into())),
                    };
                    let caller = rows.u()?;
                    calls.push(Call {
                        caller: u32::try_from(caller >> 1)
                            .map_err(|_| damaged("a caller is out of range".into()))?,
                        callee,
                        tail_call: caller & 1 != 0,
                    });
                }
                rows.finish().map_err(damaged)?;

                let mut rows = Varints::new("line file", s.line_files);
                let mut lines = LineTable {
                    files: Vec::new(),
                    rows: s.line_rows.to_vec(),
                };
                let (mut file, mut start) = (0u32, 0usize);
                while !rows.is_done() {
                    let delta = rows.u32()?;
                    if delta == 0 && !lines.files.is_empty() {
                        return Err(damaged("a file's lines are listed twice".into()));
                    }
                    file = file
                        .checked_add(delta)
                        .ok_or_else(|| damaged("a line's file is out of range".into()))?;
                    let end = start
                        .checked_add(rows.u()? as usize)
                        .filter(|&end| end <= lines.rows.len())
                        .ok_or_else(|| damaged("a file's lines run past the table".into()))?;
                    let count = rows.u32()?;
                    lines.files.push(LineFile {
                        file,
                        start,
                        end,
                        count,
                    });
                    start = end;
                }
                if start != lines.rows.len() {
                    return Err(damaged("the line table has rows no file owns".into()));
                }

                Ok((instances, inline_sites, calls, lines))
            };
            let (strings, numbers) = std::thread::scope(|scope| {
                let strings = scope.spawn(strings);
                let numbers = numbers();
                let strings = strings
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (strings, numbers)
            });
            let (functions_out, functions) = strings?;
            let (instances, inline_sites, calls, lines) = numbers?;

            Ok(ObjectIndex {
                name: object.to_owned(),
                build_id: s.build_id.map(str::to_owned),
                symbols: FunctionTable {
                    object: object.to_owned(),
                    ftrace_table: s.ftrace_table,
                    functions: functions_out,
                },
                files: s.files.iter().map(|f| (*f).to_owned()).collect(),
                functions,
                instances,
                sites_by_function: sites_by_function(&inline_sites),
                inline_sites,
                calls,
                lines,
                skipped: s.skipped,
            })
        }
    }
}

#[cfg(test)]
mod tests {
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
