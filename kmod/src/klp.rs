//! Livepatch relocations (Documentation/livepatch/module-elf-format.rst).
//!
//! Replacement code often uses what the kernel does not export to modules: static
//! functions and data of the file it patches (`saved_command_line` in
//! `cmdline_proc_show`). The module loader cannot resolve those; livepatch does, by name
//! and position, when the patched object is there. So after kbuild has linked the module
//! (with modpost told to only warn about them), each relocation against such a symbol
//! moves into a `.klp.rela.<object><section>` section (`SHF_RELA_LIVEPATCH | SHF_ALLOC`)
//! and the symbol becomes `.klp.sym.<object>.<name>,<sympos>` with `SHN_LIVEPATCH`.

use object::build::elf::{Builder, SectionData, SymbolId};
use object::elf;
use std::collections::{BTreeMap, HashMap};

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
