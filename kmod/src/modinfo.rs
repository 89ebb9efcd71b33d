//! What a module says about itself: its `.modinfo` keys (name, vermagic, `livepatch=Y`,
//! license, Graftbench's own `graftbench.*` keys) and its signature.

use crate::signature::{self, SignatureError, SignatureInfo};
use object::{Object, ObjectSection};

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
}

/// Why a module could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// Not an ELF object.
    #[error("not a kernel module (not an ELF object): {0}")]
    NotElf(String),
    /// No `.modinfo`.
    #[error("not a kernel module: no .modinfo section")]
    NoModinfo,
    /// The signature trailer or message is damaged.
    #[error(transparent)]
    Signature(#[from] SignatureError),
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
    Ok(ModuleInfo {
        name: get("name"),
        vermagic: get("vermagic"),
        livepatch: get("livepatch").as_deref() == Some("Y"),
        license: get("license"),
        signature,
        sha256: signature::body_sha256(module)?,
        keys,
    })
}
