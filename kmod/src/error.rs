//! Why a livepatch module could not be specified, generated, built or read: one error
//! type for the crate, each variant naming its input (file, symbol, header, key).

use crate::signature::SignatureError;
use std::path::{Path, PathBuf};

/// Why a module could not be made, built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// A replacement written other than `OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION`.
    #[error("`{0}`: write OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION, e.g. vmlinux:cmdline_proc_show=livepatch_cmdline_proc_show")]
    BadReplacement(String),
    /// A module name kbuild and the kernel would not take.
    #[error("module name `{0}`: use 1 to 55 letters, digits or `_`")]
    BadName(String),
    /// A specification that replaces nothing.
    #[error("no function to replace: give at least one OBJECT:FUNCTION=NEW_FUNCTION")]
    NothingToReplace,
    /// A replacement function the C source does not define.
    #[error("{function} is not defined in the replacement source")]
    UndefinedFunction {
        /// The function named by the replacement.
        function: String,
    },
    /// A `.modinfo` key or value that would corrupt the section.
    #[error("modinfo key `{key}={value}` is not allowed")]
    BadModinfoKey {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// An analysis report this version cannot use.
    #[error("{}: {problem}", .path.display())]
    Report {
        /// The report file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A module directory whose Kbuild file names no module.
    #[error("{} has no obj-m line", .kbuild.display())]
    NoObjM {
        /// The Kbuild file.
        kbuild: PathBuf,
    },
    /// Not a configured kernel build directory.
    #[error("{} is not a configured kernel build directory (no Makefile or include/config/auto.conf): install the headers, e.g. apt-get install linux-headers-$(uname -r)", .dir.display())]
    NotKernelDir {
        /// The directory given.
        dir: PathBuf,
    },
    /// A kernel that cannot load livepatch modules.
    #[error("{} is a kernel without CONFIG_LIVEPATCH: it cannot load livepatch modules", .dir.display())]
    NoLivepatch {
        /// The kernel build directory.
        dir: PathBuf,
    },
    /// The layout probe compiled against the headers did not give a value.
    #[error("the layout probe gave no value for {name} (compiled from {})", .assembly.display())]
    LayoutValue {
        /// The `klp_*` field or size.
        name: String,
        /// The probe's assembly output.
        assembly: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A build step failed.
    #[error("{step} failed{}:\n{detail}\n(full log: {log})", if .errors.is_empty() { String::new() } else { format!(" at {}", .errors.join("; ")) })]
    Build {
        /// Which step.
        step: String,
        /// `file:line: error: ...` lines found in the output.
        errors: Vec<String>,
        /// The end of the output.
        detail: String,
        /// Where the whole output is.
        log: String,
    },
    /// The replacement code uses kernel symbols that are not exported to modules.
    #[error("the replacement code uses {} that the kernel does not export to modules, in a patch of several objects: {}. Say where each is with --klp-symbol NAME=OBJECT[,SYMPOS] (full log: {log})", if .symbols.len() == 1 { "a symbol" } else { "symbols" }, .symbols.join(", "))]
    Unexported {
        /// The symbols.
        symbols: Vec<String>,
        /// Where the whole output is.
        log: String,
    },
    /// A build step ran past its time limit and was stopped.
    #[error("{step} did not finish within {seconds} s and was stopped (full log: {log})")]
    Timeout {
        /// Which step.
        step: String,
        /// The limit.
        seconds: u64,
        /// Where the output is.
        log: String,
    },
    /// Not an ELF object.
    #[error("not a kernel module (not an ELF object): {0}")]
    NotElf(String),
    /// No `.modinfo`.
    #[error("not a kernel module: no .modinfo section")]
    NoModinfo,
    /// The livepatch descriptors of a module Graftbench generated are damaged.
    #[error("the module's livepatch descriptors are damaged: {0}")]
    Descriptors(String),
    /// The signature trailer or message is damaged.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// An [`ModuleError::Io`] for `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModuleError + '_ {
    move |source| ModuleError::Io {
        path: path.to_owned(),
        source,
    }
}
