//! What a module says about itself: its `.modinfo` keys (name, vermagic, `livepatch=Y`,
//! license, Graftbench's own `graftbench.*` keys) and its signature.

use crate::klp::KlpFunc;
use crate::module::Layout;
use crate::signature::{self, SignatureError, SignatureInfo};
use crate::ModuleError;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex};
use std::collections::HashMap;

/// A module's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// `name=`.
    pub name: Option<String>,
    /// `vermagic=`: the kernel build it was made for.
    pub vermagic: Option<String>,
    /// `livepatch=Y`.
    pub livepatch: bool,
    /// `license=`.
    pub license: Option<String>,
    /// Every `.modinfo` key and value, in order.
    pub keys: Vec<(String, String)>,
    /// The signature, when the module carries one.
    pub signature: Option<SignatureInfo>,
    /// SHA-256 of the module without its signature.
    pub sha256: String,
    /// The functions it replaces, read from its `klp_patch` descriptors (a module
    /// Graftbench generated; empty for others).
    pub replaces: Vec<KlpFunc>,
}

/// Reads a module (signed or not).
pub fn read(module: &[u8]) -> Result<ModuleInfo, ModuleError> {
    let body = signature::strip(module)?;
    let signature = match signature::inspect(module) {
        Ok(info) => Some(info),
        Err(SignatureError::Unsigned) => None,
        Err(other) => return Err(other.into()),
    };
    let file = object::File::parse(body).map_err(|e| ModuleError::NotElf(e.to_string()))?;
    let data = file
        .section_by_name(".modinfo")
        .ok_or(ModuleError::NoModinfo)?
        .data()
        .map_err(|e| ModuleError::NotElf(e.to_string()))?;
    let keys: Vec<(String, String)> = data
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (key, value) = text.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect();
    let get = |name: &str| keys.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let replaces = match get("graftbench.klp_layout").and_then(|l| Layout::decode(&l)) {
        Some(layout) => descriptors(&file, &layout)?,
        None => Vec::new(),
    };
    Ok(ModuleInfo {
        replaces,
        name: get("name"),
        vermagic: get("vermagic"),
        livepatch: get("livepatch").as_deref() == Some("Y"),
        license: get("license"),
        signature,
        sha256: signature::body_sha256(module)?,
        keys,
    })
}

/// Where a pointer in the module points: a section and an offset in it, or a symbol the
/// module does not define (a function name).
#[derive(Debug, Clone)]
enum Target {
    At(SectionIndex, u64),
    Symbol(String),
}

/// Follows `graftbench_klp_patch` through its relocations: objects, then functions.
fn descriptors(file: &object::File<'_>, layout: &Layout) -> Result<Vec<KlpFunc>, ModuleError> {
    let damaged = |what: &str| ModuleError::Descriptors(what.to_owned());
    let patch = file
        .symbols()
        .find(|s| s.name() == Ok("graftbench_klp_patch"))
        .ok_or_else(|| damaged("no graftbench_klp_patch symbol"))?;
    let object::SymbolSection::Section(patch_section) = patch.section() else {
        return Err(damaged("graftbench_klp_patch is not in a section"));
    };
    // Every relocation of the module: (section, offset) -> target.
    let mut pointers: HashMap<(SectionIndex, u64), Target> = HashMap::new();
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let Ok(symbol) = file.symbol_by_index(index) else {
                continue;
            };
            // Functions by name (the replacements); data by place (strings, arrays).
            let target = match symbol.section() {
                object::SymbolSection::Section(_) if symbol.kind() == object::SymbolKind::Text => {
                    Target::Symbol(symbol.name().unwrap_or_default().to_owned())
                }
                object::SymbolSection::Section(s) => {
                    Target::At(s, symbol.address().wrapping_add_signed(relocation.addend()))
                }
                _ => Target::Symbol(symbol.name().unwrap_or_default().to_owned()),
            };
            pointers.insert((section.index(), offset), target);
        }
    }
    let pointer = |section: SectionIndex, offset: u64| pointers.get(&(section, offset)).cloned();
    let bytes_at = |section: SectionIndex, offset: u64, len: usize| -> Option<Vec<u8>> {
        let data = file.section_by_index(section).ok()?.data().ok()?;
        let start = usize::try_from(offset).ok()?;
        data.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    };
    let string_at = |target: &Target| -> Option<String> {
        let Target::At(section, offset) = target else {
            return None;
        };
        let data = file.section_by_index(*section).ok()?.data().ok()?;
        let rest = data.get(usize::try_from(*offset).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    };
    let [func_size, old_name, new_func, old_sympos] = layout.func;
    let [object_size, object_name, object_funcs] = layout.object;
    let Some(Target::At(objects_section, objects_start)) =
        pointer(patch_section, patch.address() + layout.patch[2])
    else {
        return Err(damaged("klp_patch.objs points nowhere"));
    };
    let mut found = Vec::new();
    // Arrays end with a zeroed entry: no relocation for its pointers. The bounds guard
    // a damaged module.
    for o in 0..64u64 {
        let at = objects_start + o * object_size;
        let Some(Target::At(funcs_section, funcs_start)) =
            pointer(objects_section, at + object_funcs)
        else {
            break;
        };
        let object = pointer(objects_section, at + object_name)
            .and_then(|t| string_at(&t))
            .unwrap_or_else(|| "vmlinux".to_owned());
        for f in 0..4096u64 {
            let at = funcs_start + f * func_size;
            let Some(name) = pointer(funcs_section, at + old_name) else {
                break;
            };
            let function = string_at(&name).ok_or_else(|| damaged("klp_func.old_name"))?;
            let replacement = match pointer(funcs_section, at + new_func) {
                Some(Target::Symbol(s)) => s,
                _ => return Err(damaged("klp_func.new_func")),
            };
            let sympos = bytes_at(funcs_section, at + old_sympos, 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                // The kernel's field is an unsigned long; no symbol has 4 billion twins.
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| damaged("klp_func.old_sympos"))?;
            found.push(KlpFunc {
                object: object.clone(),
                old_name: function,
                old_sympos: sympos,
                new_name: replacement,
            });
        }
    }
    Ok(found)
}
