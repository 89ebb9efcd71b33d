//! A kernel build's configuration: which `CONFIG_` symbols are set, and to what.
//!
//! A build's configuration comes in two forms, and [`KernelConfig::parse`] tells them
//! apart by their content:
//!
//! - `.config`, as Kconfig writes it: `CONFIG_X=y`, `CONFIG_X=m`, `CONFIG_X="text"`,
//!   `CONFIG_X=123`, `CONFIG_X=0x10`, `# CONFIG_X is not set`, and `#` comments;
//! - `include/generated/autoconf.h`, what the preprocessor is given: `#define CONFIG_X 1`
//!   for `y`, `#define CONFIG_X_MODULE 1` (and no `CONFIG_X`) for `m`, the string or the
//!   number for the others, and `/* */` comments.
//!
//! Kconfig lists every symbol it knows in `.config`, and a symbol that is not set is no
//! macro at all to the preprocessor: a symbol that neither form mentions is not set.
//!
//! A line that is neither blank, a comment nor a symbol is an error naming the line, not
//! skipped: a skipped `CONFIG_X=y` would make `CONFIG_X` look unset, and code this build
//! compiles would be left out of the analysis as "not compiled". For the same reason a
//! file that sets no symbol at all is refused (it is not a configuration), and so is one
//! larger than [`MAX_CONFIG_BYTES`] (a distribution kernel's is about 300 KiB).

use std::collections::BTreeMap;
use std::path::Path;

/// The largest configuration read, in bytes.
pub const MAX_CONFIG_BYTES: usize = 16 << 20;

/// The longest piece of a malformed line quoted in an error.
const QUOTED_CHARS: usize = 80;

/// What a `CONFIG_` symbol is set to.
///
/// The two forms do not always say the same of a symbol's type, though they give the
/// preprocessor the same value: in `autoconf.h`, a `bool` set to `y` and an `int` set to
/// 1 are the same `#define CONFIG_X 1` (read from there, both are
/// [`ConfigValue::Builtin`]), and `.config` may write a `hex` value without its `0x`
/// (read from there, it is an [`ConfigValue::Int`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// `=y`: the macro is defined as `1`.
    Builtin,
    /// `=m`: `CONFIG_X_MODULE` is defined as `1`, and `CONFIG_X` is not defined.
    Module,
    /// An `int` symbol's value.
    Int(i64),
    /// A `hex` symbol's value (written `0x...`).
    Hex(u64),
    /// A `string` symbol's value, without its quotes and escapes.
    String(String),
}

impl std::fmt::Display for ConfigValue {
    /// As `.config` writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Builtin => f.write_str("y"),
            ConfigValue::Module => f.write_str("m"),
            ConfigValue::Int(value) => write!(f, "{value}"),
            ConfigValue::Hex(value) => write!(f, "{value:#x}"),
            ConfigValue::String(text) => write!(f, "{text:?}"),
        }
    }
}

/// Which form a configuration was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// Kconfig's `.config`.
    DotConfig,
    /// `include/generated/autoconf.h`.
    Autoconf,
}

/// Why a kernel configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("{size} bytes, more than the limit of {limit}: not a kernel configuration")]
    TooLarge {
        /// Its size (at least: reading stops past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A line that is neither blank, a comment nor a symbol of the file's form.
    #[error("line {line}: {why}: `{text}`")]
    Malformed {
        /// The line, from 1.
        line: usize,
        /// Its text (the start of it, when long).
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Not one `CONFIG_` symbol set: not a `.config` or `autoconf.h`.
    #[error("no CONFIG_ symbol is set: not a kernel .config or include/generated/autoconf.h")]
    NoSymbols,
    /// The file could not be read.
    #[error("{0}")]
    Io(std::io::Error),
    /// One of the above, in a file.
    #[error("kernel configuration {path}: {error}")]
    InFile {
        /// The file as given.
        path: String,
        /// What is wrong with it (in the message, not a separate source: a chain of
        /// both would say it twice).
        error: Box<ConfigError>,
    },
}

/// A kernel build's configuration: the `CONFIG_` symbols that are set.
///
/// ```
/// use analyzer::source::{ConfigValue, KernelConfig};
///
/// let config = KernelConfig::parse(b"CONFIG_SMP=y\nCONFIG_EXT4_FS=m\n# CONFIG_KASAN is not set\n").unwrap();
/// assert_eq!(config.get("CONFIG_SMP"), Some(&ConfigValue::Builtin));
/// assert_eq!(config.get("CONFIG_EXT4_FS"), Some(&ConfigValue::Module));
/// assert_eq!(config.get("CONFIG_KASAN"), None);
/// // What the preprocessor sees: `=m` defines CONFIG_EXT4_FS_MODULE, not CONFIG_EXT4_FS.
/// assert!(config.is_macro_defined("CONFIG_EXT4_FS_MODULE"));
/// assert!(!config.is_macro_defined("CONFIG_EXT4_FS"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    format: ConfigFormat,
    /// By full name (`CONFIG_SMP`); a symbol not set is absent.
    symbols: BTreeMap<String, ConfigValue>,
}

impl KernelConfig {
    /// Reads a `.config` or `autoconf.h` file (see [`KernelConfig::parse`]).
    pub fn read(path: &Path) -> Result<KernelConfig, ConfigError> {
        let shown = path.display().to_string();
        let in_file = |error| ConfigError::InFile {
            path: shown.clone(),
            error: Box::new(error),
        };
        let bytes = super::read_capped(path, &shown, MAX_CONFIG_BYTES as u64).map_err(|e| {
            in_file(match e {
                super::SourceError::TooLarge { size, limit, .. } => {
                    ConfigError::TooLarge { size, limit }
                }
                super::SourceError::Io { source, .. } => ConfigError::Io(source),
                other => ConfigError::Io(std::io::Error::other(other.to_string())),
            })
        })?;
        KernelConfig::parse(&bytes).map_err(in_file)
    }

    /// Parses a `.config` or an `autoconf.h`, told apart by the first line that sets or
    /// unsets a symbol: `#define ...` is `autoconf.h`, `CONFIG_...=` or
    /// `# CONFIG_... is not set` is `.config`.
    ///
    /// A line that is neither blank, a comment nor a symbol of that form is an error
    /// naming it (a skipped line would make a set symbol look unset), and so is a file
    /// that sets no symbol. When a symbol is given twice, the later line counts, as for
    /// Kconfig.
    pub fn parse(bytes: &[u8]) -> Result<KernelConfig, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_CONFIG_BYTES as u64,
            });
        }
        let format = detect(bytes).ok_or(ConfigError::NoSymbols)?;
        let mut config = KernelConfig {
            format,
            symbols: BTreeMap::new(),
        };
        match format {
            ConfigFormat::DotConfig => config.parse_dot_config(bytes)?,
            ConfigFormat::Autoconf => config.parse_autoconf(bytes)?,
        }
        if config.symbols.is_empty() {
            return Err(ConfigError::NoSymbols);
        }
        Ok(config)
    }

    /// Which form it was read from.
    pub fn format(&self) -> ConfigFormat {
        self.format
    }

    /// The value of the symbol `name` (`CONFIG_SMP`), or `None` when it is not set.
    pub fn get(&self, name: &str) -> Option<&ConfigValue> {
        self.symbols.get(name)
    }

    /// The symbols that are set, by name.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &ConfigValue)> + '_ {
        self.symbols
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// How many symbols are set.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether no symbol is set (never, for a configuration [`KernelConfig::parse`]
    /// returned).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Whether the preprocessor has the macro `name` defined in this build: a symbol set
    /// to anything but `m`, or `CONFIG_X_MODULE` for a symbol `CONFIG_X` set to `m`.
    pub fn is_macro_defined(&self, name: &str) -> bool {
        self.macro_value(name).is_some()
    }

    /// The macro `name` as the preprocessor has it in this build, `None` when it is not
    /// defined.
    pub(crate) fn macro_value(&self, name: &str) -> Option<&ConfigValue> {
        match self.symbols.get(name) {
            Some(ConfigValue::Module) => None,
            Some(value) => Some(value),
            None => {
                let base = name.strip_suffix("_MODULE")?;
                matches!(self.symbols.get(base), Some(ConfigValue::Module))
                    .then_some(&ConfigValue::Builtin)
            }
        }
    }

    /// `CONFIG_X=y`, `CONFIG_X=m`, `CONFIG_X not set`: a symbol as a reason shows it.
    /// `CONFIG_X_MODULE` is shown as the symbol it comes from when that is `m`.
    pub(crate) fn describe(&self, name: &str) -> String {
        if let Some(value) = self.symbols.get(name) {
            return format!("{name}={value}");
        }
        if let Some(base) = name.strip_suffix("_MODULE") {
            if let Some(value) = self.symbols.get(base) {
                return format!("{base}={value}");
            }
        }
        format!("{name} not set")
    }

    fn parse_dot_config(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        for (number, line) in lines(bytes) {
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if let Some(comment) = text.strip_prefix('#') {
                if let Some(name) = not_set(comment) {
                    self.symbols.remove(name);
                }
                continue;
            }
            let malformed = |why| malformed(number, text, why);
            let (name, value) = text
                .split_once('=')
                .ok_or_else(|| malformed("neither a comment nor CONFIG_NAME=value"))?;
            if !is_config_name(name) {
                return Err(malformed("not a CONFIG_ symbol"));
            }
            let value = match value {
                "y" => Some(ConfigValue::Builtin),
                "m" => Some(ConfigValue::Module),
                // Kconfig reads `=n` as not set (and writes `# ... is not set`).
                "n" => None,
                _ => Some(parse_value(value).ok_or_else(|| {
                    malformed("a value that is not y, m, n, a number or a string")
                })?),
            };
            match value {
                Some(value) => self.symbols.insert(name.to_owned(), value),
                None => self.symbols.remove(name),
            };
        }
        Ok(())
    }

    fn parse_autoconf(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let mut in_comment = false;
        for (number, line) in lines(bytes) {
            let text = without_comments(&line, &mut in_comment);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let malformed = |why| malformed(number, line.trim(), why);
            let rest = text
                .strip_prefix('#')
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix("define"))
                .filter(|rest| rest.starts_with([' ', '\t']))
                .ok_or_else(|| malformed("neither a comment nor #define CONFIG_NAME value"))?
                .trim_start();
            let (name, value) = rest
                .split_once([' ', '\t'])
                .map(|(name, value)| (name, value.trim()))
                .unwrap_or((rest, ""));
            if !is_config_name(name) {
                return Err(malformed("not a CONFIG_ symbol"));
            }
            let value = parse_value(value)
                .ok_or_else(|| malformed("a value that is not a number or a string"))?;
            match name.strip_suffix("_MODULE") {
                Some(base) if value == ConfigValue::Int(1) && is_config_name(base) => {
                    self.symbols.insert(base.to_owned(), ConfigValue::Module)
                }
                // `1` is how `y` is written; an int set to 1 reads the same.
                _ if value == ConfigValue::Int(1) => {
                    self.symbols.insert(name.to_owned(), ConfigValue::Builtin)
                }
                _ => self.symbols.insert(name.to_owned(), value),
            };
        }
        Ok(())
    }
}

/// The lines of `bytes` with their numbers from 1, lossily as text (a string value may
/// hold anything; the names that matter are ASCII).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, String)> + '_ {
    crate::source::split_lines(bytes)
        .into_iter()
        .enumerate()
        .map(|(i, line)| (i + 1, String::from_utf8_lossy(line).into_owned()))
}

fn malformed(line: usize, text: &str, why: &'static str) -> ConfigError {
    ConfigError::Malformed {
        line,
        text: text.chars().take(QUOTED_CHARS).collect(),
        why,
    }
}

/// `CONFIG_` followed by the characters of a C identifier.
fn is_config_name(name: &str) -> bool {
    name.len() > "CONFIG_".len()
        && name.starts_with("CONFIG_")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The symbol of a `.config` comment ` CONFIG_X is not set`, if it is one.
fn not_set(comment: &str) -> Option<&str> {
    let name = comment.trim().strip_suffix(" is not set")?;
    is_config_name(name).then_some(name)
}

/// Which form the first line that sets or unsets a symbol is in.
fn detect(bytes: &[u8]) -> Option<ConfigFormat> {
    for line in crate::source::split_lines(bytes) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.starts_with("CONFIG_") || text.strip_prefix('#').and_then(not_set).is_some() {
            return Some(ConfigFormat::DotConfig);
        }
        let directive = text.strip_prefix('#').map(str::trim_start);
        if directive.is_some_and(|d| d.starts_with("define")) {
            return Some(ConfigFormat::Autoconf);
        }
    }
    None
}

/// A number (decimal, possibly negative, or `0x` hex) or a double-quoted string with
/// `\"` and `\\` escapes, as both forms write them.
fn parse_value(text: &str) -> Option<ConfigValue> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?),
                '"' => {
                    return chars
                        .as_str()
                        .is_empty()
                        .then_some(ConfigValue::String(value))
                }
                c => value.push(c),
            }
        }
        return None;
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok().map(ConfigValue::Hex);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(ConfigValue::Int)
}

/// `line` without its `/* */` and `//` comments (outside string values); `in_comment`
/// carries an open `/*` from line to line.
fn without_comments(line: &str, in_comment: &mut bool) -> String {
    let bytes = line.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        if *in_comment {
            if bytes[i] == b'*' && next == Some(b'/') {
                *in_comment = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match bytes[i] {
            b'\\' if in_string => {
                out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                i += 2;
            }
            b'"' => {
                in_string = !in_string;
                out.push(b'"');
                i += 1;
            }
            b'/' if !in_string && next == Some(b'*') => {
                *in_comment = true;
                i += 2;
            }
            b'/' if !in_string && next == Some(b'/') => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII was left out: what remains is the line's own text.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOT_CONFIG: &str = "#\n\
        # Automatically generated file; DO NOT EDIT.\n\
        # Linux/x86 6.1.0 Kernel Configuration\n\
        #\n\
        CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\n\
        CONFIG_SMP=y\n\
        CONFIG_EXT4_FS=m\n\
        # CONFIG_KASAN is not set\n\
        CONFIG_NR_CPUS=8192\n\
        CONFIG_PHYSICAL_START=0x1000000\n\
        CONFIG_ILLEGAL_POINTER_VALUE=0xdead000000000000\n\
        CONFIG_NEGATIVE=-3\n\
        CONFIG_QUOTED=\"a \\\"b\\\" \\\\c\"\n\
        \n";

    const AUTOCONF: &str = "/*\n\
        \x20* Automatically generated file; DO NOT EDIT.\n\
        \x20* Linux/x86 6.1.0 Kernel Configuration\n\
        \x20*/\n\
        #define CONFIG_CC_VERSION_TEXT \"gcc (Debian 12.2.0-14) 12.2.0\"\n\
        #define CONFIG_SMP 1\n\
        #define CONFIG_EXT4_FS_MODULE 1\n\
        #define CONFIG_NR_CPUS 8192\n\
        #define CONFIG_PHYSICAL_START 0x1000000\n\
        #define CONFIG_ILLEGAL_POINTER_VALUE 0xdead000000000000\n\
        #define CONFIG_NEGATIVE -3 /* a comment */\n\
        #define CONFIG_QUOTED \"a \\\"b\\\" \\\\c\"\n";

    #[test]
    fn both_forms_read_to_the_same_symbols() {
        let dot = KernelConfig::parse(DOT_CONFIG.as_bytes()).unwrap();
        let autoconf = KernelConfig::parse(AUTOCONF.as_bytes()).unwrap();
        assert_eq!(dot.format(), ConfigFormat::DotConfig);
        assert_eq!(autoconf.format(), ConfigFormat::Autoconf);
        let symbols = |c: &KernelConfig| -> Vec<(String, ConfigValue)> {
            c.symbols()
                .map(|(n, v)| (n.to_owned(), v.clone()))
                .collect()
        };
        assert_eq!(symbols(&dot), symbols(&autoconf));
        assert_eq!(dot.get("CONFIG_SMP"), Some(&ConfigValue::Builtin));
        assert_eq!(dot.get("CONFIG_EXT4_FS"), Some(&ConfigValue::Module));
        assert_eq!(dot.get("CONFIG_KASAN"), None);
        assert_eq!(dot.get("CONFIG_NR_CPUS"), Some(&ConfigValue::Int(8192)));
        assert_eq!(dot.get("CONFIG_NEGATIVE"), Some(&ConfigValue::Int(-3)));
        assert_eq!(
            dot.get("CONFIG_ILLEGAL_POINTER_VALUE"),
            Some(&ConfigValue::Hex(0xdead_0000_0000_0000))
        );
        assert_eq!(
            dot.get("CONFIG_QUOTED"),
            Some(&ConfigValue::String("a \"b\" \\c".into()))
        );
        assert_eq!(dot.len(), 8);
    }

    #[test]
    fn a_module_defines_the_module_macro_and_not_the_symbol() {
        let config = KernelConfig::parse(b"CONFIG_EXT4_FS=m\nCONFIG_SMP=y\n").unwrap();
        assert!(config.is_macro_defined("CONFIG_EXT4_FS_MODULE"));
        assert!(!config.is_macro_defined("CONFIG_EXT4_FS"));
        assert!(config.is_macro_defined("CONFIG_SMP"));
        assert!(!config.is_macro_defined("CONFIG_SMP_MODULE"));
        assert!(!config.is_macro_defined("CONFIG_KASAN"));
        assert_eq!(config.describe("CONFIG_EXT4_FS_MODULE"), "CONFIG_EXT4_FS=m");
        assert_eq!(config.describe("CONFIG_EXT4_FS"), "CONFIG_EXT4_FS=m");
        assert_eq!(config.describe("CONFIG_KASAN"), "CONFIG_KASAN not set");
        assert_eq!(config.describe("CONFIG_SMP"), "CONFIG_SMP=y");
    }

    #[test]
    fn a_later_line_wins_and_n_is_not_set() {
        let config =
            KernelConfig::parse(b"CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_C=n\nCONFIG_D=y\n")
                .unwrap();
        assert_eq!(config.get("CONFIG_A"), Some(&ConfigValue::Module));
        assert_eq!(config.get("CONFIG_B"), None);
        assert_eq!(config.get("CONFIG_C"), None);
        assert_eq!(config.len(), 2);
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        for (text, line) in [
            ("CONFIG_A=y\nnonsense\n", 2),
            ("CONFIG_A=y\nCONFIG_B=maybe\n", 2),
            ("CONFIG_A=y\nFOO=y\n", 2),
            ("CONFIG_A=\"unterminated\n", 1),
            ("#define CONFIG_A 1\n#define FOO 1\n", 2),
            ("#define CONFIG_A 1\nCONFIG_B=y\n", 2),
            ("/* x */\n#define CONFIG_A 1\n#define CONFIG_B yes\n", 3),
        ] {
            match KernelConfig::parse(text.as_bytes()) {
                Err(ConfigError::Malformed { line: at, .. }) => assert_eq!(at, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_that_sets_nothing_or_is_too_large_is_refused() {
        for text in [
            "",
            "# just a comment\n",
            "/* x */\n",
            "# CONFIG_A is not set\n",
        ] {
            assert!(
                matches!(
                    KernelConfig::parse(text.as_bytes()),
                    Err(ConfigError::NoSymbols)
                ),
                "{text:?}"
            );
        }
        let large = vec![b'#'; MAX_CONFIG_BYTES + 1];
        assert!(matches!(
            KernelConfig::parse(&large),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn reading_a_file_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".config");
        std::fs::write(&path, "CONFIG_A=y\nbad line\n").unwrap();
        let error = KernelConfig::read(&path).unwrap_err().to_string();
        assert!(error.contains(".config: line 2"), "{error}");
        let missing = KernelConfig::read(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, ConfigError::InFile { .. }), "{missing}");
        std::fs::write(&path, "CONFIG_A=y\r\n").unwrap();
        assert_eq!(
            KernelConfig::read(&path).unwrap().get("CONFIG_A"),
            Some(&ConfigValue::Builtin)
        );
    }
}
