//! Rewriting a built module so that references to symbols the kernel does not export
//! become livepatch relocations (`.klp.rela.*`, `SHN_LIVEPATCH` symbols).

use crate::error::{io, ModuleError};
use std::fmt::Write as _;
use std::path::Path;

/// Turns the module's references to `unexported` symbols into livepatch relocations.
pub(super) fn klp_relocate(
    dir: &Path,
    ko: &Path,
    unexported: &[String],
    log: &Path,
) -> Result<(), ModuleError> {
    let listed_path = dir.join("klp-symbols");
    let listed: Vec<crate::klp::KlpSymbol> = std::fs::read_to_string(&listed_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(crate::klp::KlpSymbol {
                name: fields.next()?.to_owned(),
                object: fields.next()?.to_owned(),
                sympos: fields.next()?.parse().ok()?,
            })
        })
        .collect();
    let module = std::fs::read(ko).map_err(io(ko))?;
    // The objects the patch replaces functions of, from its own descriptors.
    let mut objects: Vec<String> = crate::modinfo::read(&module)
        .map(|info| info.replaces.into_iter().map(|r| r.object).collect())
        .unwrap_or_default();
    objects.sort();
    objects.dedup();
    let mut symbols = Vec::new();
    let mut unplaced = Vec::new();
    for name in unexported {
        match (listed.iter().find(|k| &k.name == name), objects.as_slice()) {
            (Some(k), _) => symbols.push(k.clone()),
            (None, [only]) => symbols.push(crate::klp::KlpSymbol {
                name: name.clone(),
                object: only.clone(),
                sympos: 0,
            }),
            (None, _) => unplaced.push(name.clone()),
        }
    }
    if !unplaced.is_empty() {
        return Err(ModuleError::Unexported {
            symbols: unplaced,
            log: log.display().to_string(),
        });
    }
    let (rewritten, moved) =
        crate::klp::write_relocations(&module, &symbols).map_err(|e| ModuleError::Build {
            step: "livepatch relocations".into(),
            errors: Vec::new(),
            detail: e.to_string(),
            log: log.display().to_string(),
        })?;
    std::fs::write(ko, rewritten).map_err(io(ko))?;
    let mut note = String::new();
    for k in &symbols {
        let _ = writeln!(
            note,
            "klp symbol {} in {} (sympos {})",
            k.name, k.object, k.sympos
        );
    }
    let _ = writeln!(note, "{moved} relocation(s) moved to .klp.rela sections");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .map_err(io(log))?;
    use std::io::Write as _;
    file.write_all(note.as_bytes()).map_err(io(log))?;
    Ok(())
}
