//! The functions of one kernel object as its ELF symbol table and ftrace tables describe
//! them: every out-of-line function and clone, where it is, and whether ftrace can
//! redirect it.
//!
//! Traceability is read from the object itself, never inferred from compiler flags: a
//! function has an ftrace entry when its address (or the address after an `endbr64` on
//! IBT kernels) is listed in the mcount table. The table is found, in order of preference,
//! between `__start_mcount_loc` and `__stop_mcount_loc` (vmlinux), in a `__mcount_loc`
//! section (a linked object holds addresses, a relocatable `.ko` holds relocations), or
//! in `__patchable_function_entries`.

use object::elf::STT_FUNC;
use object::read::elf::{ElfFile64, ElfSymbol64, SectionHeader as _};
use object::{
    Endianness, Object, ObjectKind, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex,
    SymbolIndex, SymbolSection,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// `endbr64`: on IBT kernels the ftrace call site follows it.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// One part of a GCC clone suffix, in the order GCC appended them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "n")]
pub enum CloneSuffix {
    /// `.isra.N`: IPA-SRA changed the parameters.
    Isra(u32),
    /// `.constprop.N`: specialised for constant arguments (or with unused ones removed).
    Constprop(u32),
    /// `.part.N`: the outlined rest of a partially inlined function.
    Part(u32),
    /// `.cold` or `.cold.N`: the unlikely blocks of a function.
    Cold(Option<u32>),
    /// `.lto_priv.N`: a local made unique by LTO.
    LtoPriv(u32),
    /// Any other suffix, kept as written.
    Other(String),
}

/// Symbol binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// `STB_LOCAL` (`static`).
    Local,
    /// `STB_GLOBAL`.
    Global,
    /// `STB_WEAK`.
    Weak,
}

/// Where the ftrace entry table of an object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FtraceTable {
    /// Between `__start_mcount_loc` and `__stop_mcount_loc` (vmlinux).
    McountLocSymbols,
    /// The `__mcount_loc` section.
    McountLocSection,
    /// The `__patchable_function_entries` section.
    PatchableFunctionEntries,
    /// None found: nothing in this object can be traced.
    None,
}

/// One function symbol (`STT_FUNC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSymbol {
    /// The symbol as written, e.g. `req_len.isra.0`.
    pub name: String,
    /// The name without clone suffixes, e.g. `req_len`.
    pub base_name: String,
    /// The clone suffixes, empty for an ordinary function.
    pub clone: Vec<CloneSuffix>,
    /// Address (a section offset in a relocatable object).
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// Section name (`.text`, `.init.text`, `.noinstr.text`, `.text.unlikely`, ...).
    pub section: String,
    /// Binding.
    pub binding: Binding,
    /// Whether ftrace can redirect calls to it.
    pub ftrace_entry: bool,
    /// Exported to modules (`EXPORT_SYMBOL*`: a `__ksymtab_<name>` symbol exists).
    pub exported: bool,
    /// The position livepatch's `old_sympos` needs: 0 when the name is unique in the
    /// object, else the 1-based position among the same-named functions in kallsyms order.
    pub old_sympos: u32,
}

impl FunctionSymbol {
    /// Whether any clone suffix is present.
    pub fn is_clone(&self) -> bool {
        !self.clone.is_empty()
    }

    /// Whether this is the `.cold` part of a function.
    pub fn is_cold_part(&self) -> bool {
        self.clone.iter().any(|c| matches!(c, CloneSuffix::Cold(_)))
    }
}

/// The functions of one object (vmlinux or one module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionTable {
    /// `vmlinux` or the module name.
    pub object: String,
    /// Where ftrace entries were read from.
    pub ftrace_table: FtraceTable,
    /// Every function symbol, in symbol-table order.
    pub functions: Vec<FunctionSymbol>,
}

impl FunctionTable {
    /// The functions whose base name is `name`: the function and its clones.
    pub fn with_base_name<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a FunctionSymbol> + 'a {
        self.functions.iter().filter(move |f| f.base_name == name)
    }

    /// The function with exactly this symbol name (the first, for duplicated locals).
    pub fn by_name(&self, name: &str) -> Option<&FunctionSymbol> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Why an object's functions could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// Not a 64-bit ELF file, or a damaged one.
    #[error("`{object}` is not a readable 64-bit ELF file")]
    NotElf {
        /// The object.
        object: String,
        /// What the ELF reader said.
        source: object::Error,
    },
    /// No `.symtab` (a stripped file).
    #[error("`{object}` has no symbol table (.symtab): use the unstripped debug file")]
    NoSymbolTable {
        /// The object.
        object: String,
    },
    /// The mcount table is damaged.
    #[error("`{object}`: the ftrace table {table:?} is malformed: {problem}")]
    BadFtraceTable {
        /// The object.
        object: String,
        /// Which table.
        table: FtraceTable,
        /// What is wrong.
        problem: String,
    },
}

/// Splits GCC clone suffixes off a symbol name: `f.constprop.0.isra.0` -> (`f`, [...]).
pub fn split_clone_name(name: &str) -> (&str, Vec<CloneSuffix>) {
    let Some((base, rest)) = name.split_once('.') else {
        return (name, Vec::new());
    };
    if base.is_empty() {
        return (name, Vec::new());
    }
    let parts: Vec<&str> = rest.split('.').collect();
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok());
    let mut suffixes = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let (suffix, used) = match (parts[i], number(i + 1)) {
            ("isra", Some(n)) => (CloneSuffix::Isra(n), 2),
            ("constprop", Some(n)) => (CloneSuffix::Constprop(n), 2),
            ("part", Some(n)) => (CloneSuffix::Part(n), 2),
            ("lto_priv", Some(n)) => (CloneSuffix::LtoPriv(n), 2),
            ("cold", n) => (CloneSuffix::Cold(n), if n.is_some() { 2 } else { 1 }),
            (other, _) => (CloneSuffix::Other(other.to_owned()), 1),
        };
        suffixes.push(suffix);
        i += used;
    }
    (base, suffixes)
}

/// A place in the object: section and offset within it.
type Location = (SectionIndex, u64);

/// Reads the function symbols and ftrace entries of one ELF object.
pub fn read_functions(object_name: &str, data: &[u8]) -> Result<FunctionTable, SymbolError> {
    let not_elf = |source| SymbolError::NotElf {
        object: object_name.to_owned(),
        source,
    };
    let file = ElfFile64::<Endianness>::parse(data).map_err(not_elf)?;
    if file.symbols().next().is_none() {
        return Err(SymbolError::NoSymbolTable {
            object: object_name.to_owned(),
        });
    }
    let relocatable = file.kind() == ObjectKind::Relocatable;
    let (ftrace_table, entries) =
        ftrace_entries(&file, relocatable).map_err(|(table, problem)| {
            SymbolError::BadFtraceTable {
                object: object_name.to_owned(),
                table,
                problem,
            }
        })?;
    // A vmlinux has some 40,000 entries and 50,000 function symbols: look them up.
    let entries: HashSet<Location> = entries.into_iter().collect();

    // EXPORT_SYMBOL leaves a `__ksymtab_<name>` symbol for each export.
    let exports: HashSet<&str> = file
        .symbols()
        .filter_map(|s| s.name().ok()?.strip_prefix("__ksymtab_"))
        .collect();
    let mut functions = Vec::new();
    let mut symtab_index = Vec::new();
    for symbol in file.symbols() {
        if symbol.elf_symbol().st_type() != STT_FUNC {
            continue;
        }
        let SymbolSection::Section(section_index) = symbol.section() else {
            continue; // undefined: defined elsewhere
        };
        let Ok(name) = symbol.name() else { continue };
        let section = file.section_by_index(section_index).ok();
        let section_name = section
            .as_ref()
            .and_then(|s| s.name().ok())
            .unwrap_or_default()
            .to_owned();
        let location = match &section {
            Some(s) if !relocatable => (section_index, symbol.address().wrapping_sub(s.address())),
            _ => (section_index, symbol.address()),
        };
        // On IBT kernels the ftrace call follows an `endbr64`. A debug-only file (objcopy
        // --only-keep-debug) has no code to look at; there an entry 4 bytes in can only be
        // that call, since no function of more than 4 bytes starts inside another.
        let after_endbr = match section
            .as_ref()
            .map(|s| s.elf_section_header().sh_type(file.endian()))
        {
            Some(object::elf::SHT_NOBITS) => symbol.size() > 4,
            _ => starts_with_endbr64(section.as_ref(), location.1),
        };
        let ftrace_entry = entries.contains(&location)
            || (after_endbr && entries.contains(&(section_index, location.1 + 4)));
        let (base, clone) = split_clone_name(name);
        functions.push(FunctionSymbol {
            name: name.to_owned(),
            base_name: base.to_owned(),
            clone,
            address: symbol.address(),
            size: symbol.size(),
            section: section_name,
            binding: binding(&symbol),
            ftrace_entry,
            exported: exports.contains(name),
            old_sympos: 0,
        });
        symtab_index.push(symbol.index());
    }
    assign_sympos(&mut functions, &symtab_index, relocatable);
    Ok(FunctionTable {
        object: object_name.to_owned(),
        ftrace_table,
        functions,
    })
}

fn binding(symbol: &ElfSymbol64<'_, '_, Endianness>) -> Binding {
    if symbol.is_weak() {
        Binding::Weak
    } else if symbol.is_global() {
        Binding::Global
    } else {
        Binding::Local
    }
}

fn starts_with_endbr64(
    section: Option<&object::read::elf::ElfSection64<'_, '_, Endianness>>,
    offset: u64,
) -> bool {
    let Some(section) = section else { return false };
    let Ok(data) = section.data() else {
        return false;
    };
    usize::try_from(offset)
        .ok()
        .and_then(|start| data.get(start..start.checked_add(4)?))
        .is_some_and(|bytes| bytes == ENDBR64)
}

/// livepatch resolves `old_sympos` against kallsyms, which lists vmlinux symbols by
/// address and a module's symbols in its symbol-table order. Functions whose name is
/// unique keep 0.
fn assign_sympos(
    functions: &mut [FunctionSymbol],
    symtab_index: &[SymbolIndex],
    relocatable: bool,
) {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, f) in functions.iter().enumerate() {
        by_name.entry(f.name.as_str()).or_default().push(i);
    }
    let mut positions = Vec::new();
    for (_, mut members) in by_name {
        if members.len() < 2 {
            continue;
        }
        if relocatable {
            members.sort_by_key(|&i| symtab_index[i].0);
        } else {
            members.sort_by_key(|&i| (functions[i].address, symtab_index[i].0));
        }
        for (position, i) in (1..).zip(members) {
            positions.push((i, position));
        }
    }
    for (i, position) in positions {
        functions[i].old_sympos = position;
    }
}

type TableResult = Result<(FtraceTable, Vec<Location>), (FtraceTable, String)>;

/// The ftrace call sites of the object, as section locations.
fn ftrace_entries(file: &ElfFile64<'_, Endianness>, relocatable: bool) -> TableResult {
    let by_symbols = (
        file.symbols()
            .find(|s| s.name() == Ok("__start_mcount_loc")),
        file.symbols().find(|s| s.name() == Ok("__stop_mcount_loc")),
    );
    if let (Some(start), Some(stop)) = by_symbols {
        let table = FtraceTable::McountLocSymbols;
        let addresses = read_address_range(file, start.address(), stop.address())
            .map_err(|problem| (table, problem))?;
        return Ok((table, absolute_to_locations(file, &addresses)));
    }
    for (name, table) in [
        ("__mcount_loc", FtraceTable::McountLocSection),
        (
            "__patchable_function_entries",
            FtraceTable::PatchableFunctionEntries,
        ),
    ] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let entries = if relocatable {
            relocated_locations(file, &section)
        } else {
            let data = section.data().map_err(|e| (table, e.to_string()))?;
            let addresses = words(data, file.endianness()).map_err(|problem| (table, problem))?;
            Ok(absolute_to_locations(file, &addresses))
        }
        .map_err(|problem| (table, problem))?;
        return Ok((table, entries));
    }
    Ok((FtraceTable::None, Vec::new()))
}

fn words(data: &[u8], endian: Endianness) -> Result<Vec<u64>, String> {
    if !data.len().is_multiple_of(8) {
        return Err(format!(
            "{} bytes is not a whole number of 8-byte entries",
            data.len()
        ));
    }
    Ok(data
        .chunks_exact(8)
        .map(|c| {
            let bytes: [u8; 8] = c.try_into().unwrap_or_default();
            match endian {
                Endianness::Little => u64::from_le_bytes(bytes),
                Endianness::Big => u64::from_be_bytes(bytes),
            }
        })
        .collect())
}

/// The 8-byte words between two addresses of a linked object.
fn read_address_range(
    file: &ElfFile64<'_, Endianness>,
    start: u64,
    stop: u64,
) -> Result<Vec<u64>, String> {
    if stop < start {
        return Err(format!(
            "__stop_mcount_loc {stop:#x} is before __start_mcount_loc {start:#x}"
        ));
    }
    if stop == start {
        return Ok(Vec::new());
    }
    let section = file
        .sections()
        .find(|s| s.address() <= start && stop <= s.address().saturating_add(s.size()))
        .ok_or_else(|| format!("no section holds {start:#x}..{stop:#x}"))?;
    if section.elf_section_header().sh_type(file.endian()) == object::elf::SHT_NOBITS {
        return Err(format!(
            "its section {} has no contents in this file: a debug-only file (objcopy --only-keep-debug) lacks the table; give the unstripped vmlinux (the -dbg package's)",
            section.name().unwrap_or("?")
        ));
    }
    let data = section.data().map_err(|e| e.to_string())?;
    let from = usize::try_from(start - section.address()).map_err(|e| e.to_string())?;
    let to = usize::try_from(stop - section.address()).map_err(|e| e.to_string())?;
    let slice = data
        .get(from..to)
        .ok_or_else(|| format!("{start:#x}..{stop:#x} is outside the section's file data"))?;
    words(slice, file.endianness())
}

fn absolute_to_locations(file: &ElfFile64<'_, Endianness>, addresses: &[u64]) -> Vec<Location> {
    let mut text: Vec<(u64, u64, SectionIndex)> = file
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .map(|s| (s.address(), s.address().saturating_add(s.size()), s.index()))
        .collect();
    text.sort_unstable_by_key(|&(start, end, _)| (start, end));
    addresses
        .iter()
        .filter_map(|&address| {
            let i = text.partition_point(|&(start, _, _)| start <= address);
            let (start, end, index) = *text.get(i.checked_sub(1)?)?;
            (address < end).then_some((index, address - start))
        })
        .collect()
}

/// A relocatable object's table is zeros plus one relocation per entry.
fn relocated_locations(
    file: &ElfFile64<'_, Endianness>,
    section: &object::read::elf::ElfSection64<'_, '_, Endianness>,
) -> Result<Vec<Location>, String> {
    let mut locations = Vec::new();
    for (offset, relocation) in section.relocations() {
        let RelocationTarget::Symbol(index) = relocation.target() else {
            return Err(format!(
                "entry at {offset:#x} is not relocated against a symbol"
            ));
        };
        let symbol = file
            .symbol_by_index(index)
            .map_err(|e| format!("entry at {offset:#x}: {e}"))?;
        let SymbolSection::Section(target) = symbol.section() else {
            return Err(format!("entry at {offset:#x} points outside any section"));
        };
        let at = symbol.address().wrapping_add_signed(relocation.addend());
        locations.push((target, at));
    }
    Ok(locations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_suffixes_split_in_order() {
        assert_eq!(split_clone_name("vfs_read"), ("vfs_read", vec![]));
        assert_eq!(
            split_clone_name("req_len.isra.0"),
            ("req_len", vec![CloneSuffix::Isra(0)])
        );
        assert_eq!(
            split_clone_name("f.constprop.0.isra.0"),
            ("f", vec![CloneSuffix::Constprop(0), CloneSuffix::Isra(0)])
        );
        assert_eq!(
            split_clone_name("check.part.3.cold"),
            ("check", vec![CloneSuffix::Part(3), CloneSuffix::Cold(None)])
        );
        assert_eq!(
            split_clone_name("x.cold.7"),
            ("x", vec![CloneSuffix::Cold(Some(7))])
        );
        assert_eq!(
            split_clone_name("y.localalias"),
            ("y", vec![CloneSuffix::Other("localalias".into())])
        );
        assert_eq!(split_clone_name(".hidden"), (".hidden", vec![]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            read_functions("junk", b"\x7fELF\x02\x01\x01 truncated"),
            Err(SymbolError::NotElf { .. })
        ));
        assert!(matches!(
            read_functions("empty", b""),
            Err(SymbolError::NotElf { .. })
        ));
    }
}
