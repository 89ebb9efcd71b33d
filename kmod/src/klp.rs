//! Livepatch relocations (Documentation/livepatch/module-elf-format.rst).
//!
//! Replacement code often uses what the kernel does not export to modules: static
//! functions and data of the file it patches (`saved_command_line` in
//! `cmdline_proc_show`). The module loader cannot resolve those; livepatch does, by name
//! and position, when the patched object is there. So after kbuild has linked the module
//! (with modpost told to only warn about them), each relocation against such a symbol
//! moves into a `.klp.rela.<object><section>` section (`SHF_RELA_LIVEPATCH | SHF_ALLOC`)
//! and the symbol becomes `.klp.sym.<object>.<name>,<sympos>` with `SHN_LIVEPATCH`.

use crate::ModuleError;
use object::build::elf::{Builder, SectionData, SymbolId};
use object::elf;
use std::collections::{BTreeMap, HashMap};

/// One function a livepatch replaces (`struct klp_func` with its `klp_object`): what the
/// analysis lists, what module generation writes and what `module info` reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlpFunc {
    /// `vmlinux` or the module that holds the function (`klp_object.name`).
    pub object: String,
    /// The function replaced (`klp_func.old_name`), clone suffix included.
    pub old_name: String,
    /// `klp_func.old_sympos`: 0 when the name is unique.
    pub old_sympos: u32,
    /// The replacement function in `replacement.c`.
    pub new_name: String,
}

impl std::str::FromStr for KlpFunc {
    type Err = ModuleError;

    /// `OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION`, e.g.
    /// `vmlinux:cmdline_proc_show=livepatch_cmdline_proc_show`.
    fn from_str(text: &str) -> Result<KlpFunc, ModuleError> {
        let bad = || ModuleError::BadReplacement(text.to_owned());
        let (old, new_name) = text.split_once('=').ok_or_else(bad)?;
        let (object, old) = old.split_once(':').ok_or_else(bad)?;
        let (old_name, old_sympos) = match old.split_once(',') {
            Some((name, pos)) => (name, pos.parse().map_err(|_| bad())?),
            None => (old, 0),
        };
        let symbol_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        let object_ok = !object.is_empty()
            && object
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !object_ok || !symbol_ok(old_name) || !symbol_ok(new_name) || new_name.contains('.') {
            return Err(bad());
        }
        Ok(KlpFunc {
            object: object.to_owned(),
            old_name: old_name.to_owned(),
            old_sympos,
            new_name: new_name.to_owned(),
        })
    }
}

impl KlpFunc {
    /// The replacement of a function an analysis report lists, by the naming convention:
    /// `FOO` (clone suffix dots as `_`) is replaced by `livepatch_FOO` from the source.
    pub fn replacing(r: &analyzer::impact::Replacement) -> KlpFunc {
        KlpFunc {
            object: r.object.clone(),
            old_name: r.symbol.clone(),
            old_sympos: r.old_sympos,
            new_name: format!("livepatch_{}", r.symbol.replace('.', "_")),
        }
    }

    /// The replacements of an `analyze --format json` report read from `path`.
    pub fn from_report(path: &std::path::Path, json: &[u8]) -> Result<Vec<KlpFunc>, ModuleError> {
        let problem = |problem: String| ModuleError::Report {
            path: path.to_owned(),
            problem,
        };
        let report: analyzer::impact::ImpactReport = serde_json::from_slice(json)
            .map_err(|e| problem(format!("not an analyze --format json report: {e}")))?;
        if report.version != analyzer::impact::REPORT_VERSION {
            return Err(problem(format!(
                "a version {} report; this Graftbench reads version {}",
                report.version,
                analyzer::impact::REPORT_VERSION
            )));
        }
        if report.replace.is_empty() {
            return Err(problem("lists no function to replace".into()));
        }
        Ok(report.replace.iter().map(KlpFunc::replacing).collect())
    }
}

impl std::fmt::Display for KlpFunc {
    /// `vmlinux:cmdline_proc_show with livepatch_cmdline_proc_show`, with `, old_sympos N`
    /// after the function when it is not unique.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.object, self.old_name)?;
        if self.old_sympos > 0 {
            write!(f, ", old_sympos {}", self.old_sympos)?;
        }
        write!(f, " with {}", self.new_name)
    }
}

/// `SHF_RELA_LIVEPATCH` (include/uapi/linux/elf.h).
pub const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;
/// `SHN_LIVEPATCH`.
pub const SHN_LIVEPATCH: u16 = 0xff20;

/// Where livepatch finds a symbol: the object that defines it and its position among
/// same-named symbols (0 when unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlpSymbol {
    /// The symbol.
    pub name: String,
    /// `vmlinux` or a module name.
    pub object: String,
    /// `old_sympos`-style position.
    pub sympos: u32,
}

/// Why the relocations could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing livepatch relocations: {0}")]
pub struct KlpError(String);

/// Rewrites a linked module so that the relocations against `symbols` are livepatch
/// relocations. Returns how many relocations moved.
pub fn write_relocations(
    module: &[u8],
    symbols: &[KlpSymbol],
) -> Result<(Vec<u8>, usize), KlpError> {
    let error = |e: &dyn std::fmt::Display| KlpError(e.to_string());
    let mut builder = Builder::read(module).map_err(|e| error(&e))?;
    let wanted: HashMap<&[u8], &KlpSymbol> =
        symbols.iter().map(|s| (s.name.as_bytes(), s)).collect();
    // The undefined symbols to turn into livepatch symbols, by id.
    let mut klp_symbols: Vec<(SymbolId, &KlpSymbol)> = Vec::new();
    for symbol in builder.symbols.iter() {
        if symbol.section.is_none() && symbol.st_shndx.0 == elf::SHN_UNDEF.0 {
            if let Some(klp) = wanted.get(&*symbol.name) {
                klp_symbols.push((symbol.id(), *klp));
            }
        }
    }
    let klp_of = |id: SymbolId| klp_symbols.iter().find(|(s, _)| *s == id).map(|(_, k)| *k);
    let missing: Vec<&str> = symbols
        .iter()
        .filter(|s| !klp_symbols.iter().any(|(_, k)| k.name == s.name))
        .map(|s| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(KlpError(format!(
            "the module does not use {} (no undefined symbol of that name)",
            missing.join(", ")
        )));
    }
    // Split every relocation section: what stays, and per object what moves.
    let mut moved = 0;
    let mut new_sections = Vec::new();
    let section_ids: Vec<_> = builder.sections.iter().map(|s| s.id()).collect();
    for id in section_ids {
        let section = builder.sections.get_mut(id);
        if section.sh_type.0 != elf::SHT_RELA.0 || section.sh_flags.0 & SHF_RELA_LIVEPATCH != 0 {
            continue;
        }
        let (Some(target), link) = (section.sh_info_section, section.sh_link_section) else {
            continue;
        };
        let SectionData::Relocation(relocations) = &mut section.data else {
            continue;
        };
        let mut per_object: BTreeMap<String, Vec<_>> = BTreeMap::new();
        relocations.retain(|r| match r.symbol.and_then(klp_of) {
            Some(klp) => {
                per_object.entry(klp.object.clone()).or_default().push(*r);
                false
            }
            None => true,
        });
        for (object, relocations) in per_object {
            moved += relocations.len();
            new_sections.push((object, target, link, relocations));
        }
    }
    for (object, target, link, relocations) in new_sections {
        let target_name = builder.sections.get(target).name.to_vec();
        let mut name = format!(".klp.rela.{object}").into_bytes();
        name.extend_from_slice(&target_name);
        let section = builder.sections.add();
        section.name = name.into();
        section.sh_type = elf::SHT_RELA;
        section.sh_flags =
            elf::SectionFlags(elf::SHF_ALLOC.0 | elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH);
        section.sh_info_section = Some(target);
        section.sh_link_section = link;
        section.sh_addralign = 8;
        section.sh_entsize = 24;
        section.data = SectionData::Relocation(relocations);
    }
    for (id, klp) in &klp_symbols {
        let symbol = builder.symbols.get_mut(*id);
        symbol.name = format!(".klp.sym.{}.{},{}", klp.object, klp.name, klp.sympos)
            .into_bytes()
            .into();
        symbol.st_shndx = elf::SymbolSection(SHN_LIVEPATCH);
    }
    let mut out = Vec::with_capacity(module.len() + 4096);
    builder.write(&mut out).map_err(|e| error(&e))?;
    Ok((out, moved))
}
