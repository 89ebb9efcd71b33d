//! Preprocessor conditionals resolved with a kernel build's configuration: which lines
//! of a file this build compiles.
//!
//! [`evaluate_if`] evaluates a `#if` expression as far as the configuration decides it,
//! in three-valued logic: `CONFIG_` symbols have their values from the
//! [`KernelConfig`] (a symbol not set is not defined, and 0); `defined`, `IS_ENABLED`,
//! `IS_BUILTIN`, `IS_MODULE` and `IS_REACHABLE` of them are known; every other
//! identifier and macro call is [`Truth::Unknown`], since macros other than the
//! configuration's are not expanded. Unknown operands are carried the way C's
//! operators would treat any value: `0 && x` is 0 and `1 || x` is 1 whatever `x` is, and
//! `x ? a : a` is `a`. Malformed expressions, division by zero, overflow and nesting
//! deeper than [`MAX_CONDITION_DEPTH`] are [`Truth::Unknown`]; evaluation is linear in the
//! expression's length.
//!
//! Per file, the nesting of `#if`/`#ifdef`/`#ifndef`/`#elif`/`#else`/`#endif` then says
//! for each line whether it is compiled, not compiled, or unknown (an include guard's
//! `#ifndef FOO_H` is unknown, like any condition on a macro that is not the
//! configuration's). A line is not compiled only when some enclosing branch is certainly
//! not taken; the directive that decided it is kept, for the report to say why. A file
//! whose conditionals do not nest (an `#endif` too many, or one missing) is unknown from
//! there on, never "not compiled": the scan may have misread it.
//!
//! A file that `#define`s or `#undef`s a `CONFIG_` symbol itself (the boot decompressor
//! does) does not get that symbol's value from the configuration: it is unknown there.
//! Such a definition in a header the file includes is not seen, nor is a `CONFIG_` macro
//! a Makefile passes on the command line (arm64's `-DCONFIG_CC_HAS_K_CONSTRAINT=1`,
//! riscv's `-DCONFIG_PAGE_OFFSET=...`): not being in the configuration, it reads as not
//! set.

use super::config::{ConfigValue, KernelConfig};
use super::scan::{Directive, DirectiveKind, Scan};
use std::collections::HashSet;

/// The deepest nesting of parentheses, unary operators and `?:` evaluated; deeper is
/// [`Truth::Unknown`]. Kernel conditionals nest a few levels.
pub const MAX_CONDITION_DEPTH: u32 = 64;

/// The most configuration symbols named in one reason.
const SYMBOLS_NAMED: usize = 6;

/// The longest directive text quoted in a reason, in characters.
const DIRECTIVE_CHARS: usize = 160;

/// A condition's value as far as the configuration decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Certainly true in this build.
    True,
    /// Certainly false in this build.
    False,
    /// Depends on what the configuration does not say.
    Unknown,
}

impl Truth {
    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

/// Evaluates the expression of a `#if` or `#elif` (what follows the directive's word)
/// with `config`; see the [module documentation](self).
///
/// ```
/// use analyzer::source::{evaluate_if, KernelConfig, Truth};
///
/// let config = KernelConfig::parse(b"CONFIG_SMP=y\nCONFIG_EXT4_FS=m\nCONFIG_NR_CPUS=64\n").unwrap();
/// assert_eq!(evaluate_if(b"IS_ENABLED(CONFIG_EXT4_FS) && CONFIG_NR_CPUS > 32", &config), Truth::True);
/// assert_eq!(evaluate_if(b"defined(CONFIG_KASAN) || LINUX_VERSION_CODE > 3", &config), Truth::Unknown);
/// assert_eq!(evaluate_if(b"defined(CONFIG_KASAN) && LINUX_VERSION_CODE > 3", &config), Truth::False);
/// ```
pub fn evaluate_if(expression: &[u8], config: &KernelConfig) -> Truth {
    evaluate(&splice(expression), config, &HashSet::new()).0
}

/// The value of `expression` (spliced), and the configuration symbols it mentions.
fn evaluate(
    expression: &[u8],
    config: &KernelConfig,
    overridden: &HashSet<String>,
) -> (Truth, Vec<String>) {
    let tokens = tokens(expression);
    let mut parser = Parser {
        tokens: &tokens,
        text: expression,
        at: 0,
        config,
        overridden,
        symbols: Vec::new(),
    };
    let value = parser.conditional(0);
    let truth = match value {
        Ok(Some(num)) if parser.at == tokens.len() => {
            if num.bits != 0 {
                Truth::True
            } else {
                Truth::False
            }
        }
        _ => Truth::Unknown,
    };
    (truth, parser.symbols)
}

/// `text` without its backslash-newlines: a directive's logical line.
fn splice(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            if text.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if text.get(i + 1) == Some(&b'\r') && text.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// A preprocessor number: its bits and whether it is unsigned (`uintmax_t`) rather than
/// signed (`intmax_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Num {
    bits: u64,
    unsigned: bool,
}

impl Num {
    fn signed(value: i64) -> Num {
        Num {
            bits: value as u64,
            unsigned: false,
        }
    }

    fn truth(value: bool) -> Num {
        Num::signed(i64::from(value))
    }

    /// As a literal of this value would be typed: signed when it fits.
    fn literal(bits: u64, unsigned: bool) -> Num {
        Num {
            bits,
            unsigned: unsigned || bits > i64::MAX as u64,
        }
    }
}

/// A value or unknown.
type Val = Option<Num>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Shl,
    Shr,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    BitAnd,
    BitXor,
    BitOr,
    And,
    Or,
}

impl Op {
    /// Binding strength as a binary operator, C's order.
    fn precedence(self) -> u8 {
        match self {
            Op::Mul | Op::Div | Op::Rem => 10,
            Op::Add | Op::Sub => 9,
            Op::Shl | Op::Shr => 8,
            Op::Lt | Op::Gt | Op::Le | Op::Ge => 7,
            Op::Eq | Op::Ne => 6,
            Op::BitAnd => 5,
            Op::BitXor => 4,
            Op::BitOr => 3,
            Op::And => 2,
            Op::Or => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Num(Num),
    /// A number or character literal that is not a valid integer.
    BadNum,
    /// An identifier: its byte range in the expression.
    Ident(usize, usize),
    Op(Op),
    Not,
    Compl,
    LParen,
    RParen,
    Question,
    Colon,
    /// A string, a lone `=`, `#`, `,`, anything a `#if` cannot hold outside a macro's
    /// arguments.
    Other,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The tokens of a spliced expression; comments and white space dropped.
fn tokens(text: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let next = text.get(i + 1).copied();
        let (tok, len) = match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'/' if next == Some(b'*') => {
                i += 2;
                while i < text.len() && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(text.len());
                continue;
            }
            b'/' if next == Some(b'/') => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ if is_ident_start(b) => {
                let start = i;
                while i < text.len() && is_ident_byte(text[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(start, i));
                continue;
            }
            b'0'..=b'9' => {
                // A preprocessing number: digits, letters, `_`, `.`, and a sign after an
                // exponent letter.
                let start = i;
                i += 1;
                while i < text.len() {
                    let c = text[i];
                    let signed_exponent = (c == b'+' || c == b'-')
                        && matches!(text[i - 1], b'e' | b'E' | b'p' | b'P');
                    if !(is_ident_byte(c) || c == b'.' || signed_exponent) {
                        break;
                    }
                    i += 1;
                }
                out.push(number(&text[start..i]).map_or(Tok::BadNum, Tok::Num));
                continue;
            }
            b'\'' | b'"' => {
                let start = i;
                i += 1;
                while i < text.len() && text[i] != b && text[i] != b'\n' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(text.len());
                i = (i + 1).min(text.len());
                out.push(if b == b'\'' {
                    character(&text[start + 1..end]).map_or(Tok::BadNum, Tok::Num)
                } else {
                    Tok::Other
                });
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'?' => (Tok::Question, 1),
            b':' => (Tok::Colon, 1),
            b'~' => (Tok::Compl, 1),
            b'*' => (Tok::Op(Op::Mul), 1),
            b'/' => (Tok::Op(Op::Div), 1),
            b'%' => (Tok::Op(Op::Rem), 1),
            b'+' => (Tok::Op(Op::Add), 1),
            b'-' => (Tok::Op(Op::Sub), 1),
            b'^' => (Tok::Op(Op::BitXor), 1),
            b'!' if next == Some(b'=') => (Tok::Op(Op::Ne), 2),
            b'!' => (Tok::Not, 1),
            b'=' if next == Some(b'=') => (Tok::Op(Op::Eq), 2),
            b'<' if next == Some(b'<') => (Tok::Op(Op::Shl), 2),
            b'<' if next == Some(b'=') => (Tok::Op(Op::Le), 2),
            b'<' => (Tok::Op(Op::Lt), 1),
            b'>' if next == Some(b'>') => (Tok::Op(Op::Shr), 2),
            b'>' if next == Some(b'=') => (Tok::Op(Op::Ge), 2),
            b'>' => (Tok::Op(Op::Gt), 1),
            b'&' if next == Some(b'&') => (Tok::Op(Op::And), 2),
            b'&' => (Tok::Op(Op::BitAnd), 1),
            b'|' if next == Some(b'|') => (Tok::Op(Op::Or), 2),
            b'|' => (Tok::Op(Op::BitOr), 1),
            _ => (Tok::Other, 1),
        };
        out.push(tok);
        i += len;
    }
    out
}

/// An integer literal: decimal, `0x` hex, `0b` binary (a GNU extension), octal, with
/// `u`/`l` suffixes. `None` for anything else (a floating literal, a bad digit, more
/// than 64 bits).
fn number(text: &[u8]) -> Option<Num> {
    let digits_end = text
        .iter()
        .rposition(|b| !matches!(b, b'u' | b'U' | b'l' | b'L'))
        .map_or(0, |i| i + 1);
    let (digits, suffix) = text.split_at(digits_end);
    let us = suffix.iter().filter(|b| matches!(b, b'u' | b'U')).count();
    let ls = suffix.len() - us;
    if us > 1 || ls > 2 {
        return None;
    }
    let (radix, digits) = match digits {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest),
        [b'0', b'b' | b'B', rest @ ..] => (2, rest),
        [b'0', rest @ ..] if !rest.is_empty() => (8, rest),
        _ => (10, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        let digit = (d as char).to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    Some(Num::literal(value, us == 1))
}

/// A character literal's value (the text between its quotes): one character or one
/// escape, as a signed `char` (gcc on x86).
fn character(inner: &[u8]) -> Option<Num> {
    let value: u8 = match inner {
        [b'\\', b'x', hex @ ..] if !hex.is_empty() && hex.len() <= 2 => {
            u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        }
        [b'\\', octal @ ..]
            if !octal.is_empty() && octal.iter().all(|b| matches!(b, b'0'..=b'7')) =>
        {
            u8::try_from(u32::from_str_radix(std::str::from_utf8(octal).ok()?, 8).ok()?).ok()?
        }
        [b'\\', e] => match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'\\' | b'\'' | b'"' | b'?' => *e,
            _ => return None,
        },
        [c] if c.is_ascii() && *c != b'\\' => *c,
        _ => return None,
    };
    Some(Num::signed(i64::from(value as i8)))
}

/// Why an expression could not be evaluated; either way it is [`Truth::Unknown`].
enum Fail {
    /// Not a valid `#if` expression (as far as can be told without expanding macros).
    Syntax,
    /// Nested deeper than [`MAX_CONDITION_DEPTH`].
    TooDeep,
}

struct Parser<'p> {
    tokens: &'p [Tok],
    text: &'p [u8],
    at: usize,
    config: &'p KernelConfig,
    /// `CONFIG_` names the file defines or undefines itself.
    overridden: &'p HashSet<String>,
    /// The configuration symbols met, first ones first.
    symbols: Vec<String>,
}

impl<'p> Parser<'p> {
    fn peek(&self) -> Option<Tok> {
        self.tokens.get(self.at).copied()
    }

    fn eat(&mut self, tok: Tok) -> bool {
        if self.peek() == Some(tok) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&self, start: usize, end: usize) -> &'p str {
        let text: &'p [u8] = self.text;
        // Identifiers are ASCII by construction.
        std::str::from_utf8(&text[start..end]).unwrap_or_default()
    }

    /// `c ? a : b`, or what binds tighter.
    fn conditional(&mut self, depth: u32) -> Result<Val, Fail> {
        if depth > MAX_CONDITION_DEPTH {
            return Err(Fail::TooDeep);
        }
        let condition = self.binary(1, depth)?;
        if !self.eat(Tok::Question) {
            return Ok(condition);
        }
        let then = self.conditional(depth + 1)?;
        if !self.eat(Tok::Colon) {
            return Err(Fail::Syntax);
        }
        let otherwise = self.conditional(depth + 1)?;
        Ok(match condition {
            Some(c) if c.bits != 0 => then,
            Some(_) => otherwise,
            None => match (then, otherwise) {
                (Some(a), Some(b)) => {
                    let unsigned = a.unsigned || b.unsigned;
                    (a.bits == b.bits && (unsigned || a.unsigned == b.unsigned)).then_some(Num {
                        bits: a.bits,
                        unsigned,
                    })
                }
                _ => None,
            },
        })
    }

    /// Binary operators binding at least as tightly as `min`, by precedence climbing: a
    /// flat chain is a loop, so only nesting deepens the stack.
    fn binary(&mut self, min: u8, depth: u32) -> Result<Val, Fail> {
        let mut left = self.unary(depth)?;
        while let Some(Tok::Op(op)) = self.peek() {
            if op.precedence() < min {
                break;
            }
            self.at += 1;
            let right = self.binary(op.precedence() + 1, depth)?;
            left = apply(op, left, right);
        }
        Ok(left)
    }

    fn unary(&mut self, depth: u32) -> Result<Val, Fail> {
        let op = match self.peek() {
            Some(tok @ (Tok::Not | Tok::Compl | Tok::Op(Op::Add | Op::Sub))) => tok,
            _ => return self.primary(depth),
        };
        if depth >= MAX_CONDITION_DEPTH {
            return Err(Fail::TooDeep);
        }
        self.at += 1;
        let value = self.unary(depth + 1)?;
        Ok(value.and_then(|v| match op {
            Tok::Not => Some(Num::truth(v.bits == 0)),
            Tok::Compl => Some(Num {
                bits: !v.bits,
                unsigned: v.unsigned,
            }),
            Tok::Op(Op::Sub) if v.unsigned => Some(Num {
                bits: v.bits.wrapping_neg(),
                unsigned: true,
            }),
            Tok::Op(Op::Sub) => (v.bits as i64).checked_neg().map(Num::signed),
            _ => Some(v),
        }))
    }

    fn primary(&mut self, depth: u32) -> Result<Val, Fail> {
        let tok = self.peek().ok_or(Fail::Syntax)?;
        self.at += 1;
        match tok {
            Tok::Num(n) => Ok(Some(n)),
            Tok::LParen => {
                let value = self.conditional(depth + 1)?;
                if self.eat(Tok::RParen) {
                    Ok(value)
                } else {
                    Err(Fail::Syntax)
                }
            }
            Tok::Ident(start, end) => self.identifier(start, end),
            _ => Err(Fail::Syntax),
        }
    }

    /// An identifier just read: `defined`, a configuration test, a `CONFIG_` symbol, or
    /// anything else (unknown; a call's arguments are skipped).
    fn identifier(&mut self, start: usize, end: usize) -> Result<Val, Fail> {
        let word = self.word(start, end);
        if word == "defined" {
            let parenthesised = self.eat(Tok::LParen);
            let Some(Tok::Ident(s, e)) = self.peek() else {
                return Err(Fail::Syntax);
            };
            self.at += 1;
            if parenthesised && !self.eat(Tok::RParen) {
                return Err(Fail::Syntax);
            }
            let name = self.word(s, e);
            return Ok(self
                .known(name)
                .then(|| Num::truth(self.config.is_macro_defined(name))));
        }
        if self.peek() == Some(Tok::LParen) {
            let test = matches!(
                word,
                "IS_ENABLED" | "IS_BUILTIN" | "IS_MODULE" | "IS_REACHABLE"
            );
            if let (true, Some(Tok::Ident(s, e)), Some(Tok::RParen)) = (
                test,
                self.tokens.get(self.at + 1).copied(),
                self.tokens.get(self.at + 2).copied(),
            ) {
                self.at += 3;
                let name = self.word(s, e);
                return Ok(self.test(word, name));
            }
            // Another macro's call: what it expands to is not known.
            self.skip_parenthesised()?;
            return Ok(None);
        }
        if !self.known(word) {
            return Ok(None);
        }
        Ok(match self.config.macro_value(word) {
            None => Some(Num::signed(0)),
            Some(ConfigValue::Builtin) => Some(Num::signed(1)),
            Some(ConfigValue::Int(v)) => Some(Num::signed(*v)),
            Some(ConfigValue::Hex(v)) => Some(Num::literal(*v, false)),
            // A string compared as a number: the preprocessor would refuse it.
            Some(ConfigValue::String(_) | ConfigValue::Module) => None,
        })
    }

    /// Whether `name` is a configuration symbol the configuration decides here; noted
    /// for the reason when it is one.
    fn known(&mut self, name: &str) -> bool {
        if !name.starts_with("CONFIG_") {
            return false;
        }
        if self.symbols.len() < SYMBOLS_NAMED && !self.symbols.iter().any(|s| s == name) {
            self.symbols.push(name.to_owned());
        }
        let base = name.strip_suffix("_MODULE").unwrap_or(name);
        !(self.overridden.contains(name)
            || self.overridden.contains(base)
            || self.overridden.contains(&format!("{base}_MODULE")))
    }

    /// `IS_ENABLED(name)` and its kin, as `include/linux/kconfig.h` defines them: a
    /// macro "is defined" to them when it is defined as `1`.
    fn test(&mut self, test: &str, name: &str) -> Val {
        if !self.known(name) {
            return None;
        }
        let module_name = format!("{name}_MODULE");
        let is_one = |name: &str| {
            matches!(
                self.config.macro_value(name),
                Some(ConfigValue::Builtin | ConfigValue::Int(1))
            )
        };
        let builtin = is_one(name);
        let module = is_one(&module_name);
        match test {
            "IS_BUILTIN" => Some(Num::truth(builtin)),
            "IS_MODULE" => Some(Num::truth(module)),
            "IS_ENABLED" => Some(Num::truth(builtin || module)),
            // `m` is reachable from a module only, and which units are modules is not
            // known here.
            _ if builtin => Some(Num::truth(true)),
            _ if module => None,
            _ => Some(Num::truth(false)),
        }
    }

    /// Skips a parenthesised argument list, the `(` next.
    fn skip_parenthesised(&mut self) -> Result<(), Fail> {
        let mut open = 0usize;
        while let Some(tok) = self.peek() {
            self.at += 1;
            match tok {
                Tok::LParen => open += 1,
                Tok::RParen => {
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(Fail::Syntax)
    }
}

/// A binary operator on values, unknown operands included: `&&` and `||` are decided
/// by one operand when it can decide them.
fn apply(op: Op, left: Val, right: Val) -> Val {
    let is = |v: Val, truth: bool| v.is_some_and(|n| (n.bits != 0) == truth);
    match op {
        Op::And if is(left, false) || is(right, false) => Some(Num::truth(false)),
        Op::And => (is(left, true) && is(right, true)).then(|| Num::truth(true)),
        Op::Or if is(left, true) || is(right, true) => Some(Num::truth(true)),
        Op::Or => (is(left, false) && is(right, false)).then(|| Num::truth(false)),
        _ => arithmetic(op, left?, right?),
    }
}

/// `a op b` with C's usual arithmetic conversions: unsigned when either is. Overflow of
/// signed arithmetic, division by zero and shifts out of range are unknown.
fn arithmetic(op: Op, a: Num, b: Num) -> Val {
    if matches!(op, Op::Shl | Op::Shr) {
        let count = if b.unsigned {
            b.bits
        } else {
            u64::try_from(b.bits as i64).ok()?
        };
        let count = u32::try_from(count).ok().filter(|&c| c < 64)?;
        return Some(match (op, a.unsigned) {
            (Op::Shl, true) => Num {
                bits: a.bits << count,
                unsigned: true,
            },
            (Op::Shr, true) => Num {
                bits: a.bits >> count,
                unsigned: true,
            },
            (Op::Shl, false) => {
                Num::signed(i64::try_from(i128::from(a.bits as i64) << count).ok()?)
            }
            _ => Num::signed((a.bits as i64) >> count),
        });
    }
    if a.unsigned || b.unsigned {
        let (x, y) = (a.bits, b.bits);
        let unsigned = |bits| Num {
            bits,
            unsigned: true,
        };
        return Some(match op {
            Op::Mul => unsigned(x.wrapping_mul(y)),
            Op::Div => unsigned(x.checked_div(y)?),
            Op::Rem => unsigned(x.checked_rem(y)?),
            Op::Add => unsigned(x.wrapping_add(y)),
            Op::Sub => unsigned(x.wrapping_sub(y)),
            Op::BitAnd => unsigned(x & y),
            Op::BitXor => unsigned(x ^ y),
            Op::BitOr => unsigned(x | y),
            _ => Num::truth(compare(op, x.cmp(&y))),
        });
    }
    let (x, y) = (a.bits as i64, b.bits as i64);
    Some(match op {
        Op::Mul => Num::signed(x.checked_mul(y)?),
        Op::Div => Num::signed(x.checked_div(y)?),
        Op::Rem => Num::signed(x.checked_rem(y)?),
        Op::Add => Num::signed(x.checked_add(y)?),
        Op::Sub => Num::signed(x.checked_sub(y)?),
        Op::BitAnd => Num::signed(x & y),
        Op::BitXor => Num::signed(x ^ y),
        Op::BitOr => Num::signed(x | y),
        _ => Num::truth(compare(op, x.cmp(&y))),
    })
}

/// A comparison on ordered operands.
fn compare(op: Op, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Lt => order == Less,
        Op::Gt => order == Greater,
        Op::Le => order != Greater,
        Op::Ge => order != Less,
        Op::Eq => order == Equal,
        // `!=`; the other operators are not comparisons and do not come here.
        _ => order != Equal,
    }
}

/// Why lines are not compiled: the directive that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decider {
    /// The directive's first line.
    pub(crate) line: u32,
    /// Its text (one line, shortened when long).
    pub(crate) text: String,
    /// For people: the directive, and the configuration values it tests.
    pub(crate) why: String,
}

/// Whether a line is compiled in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineState<'c> {
    Compiled,
    /// The configuration does not decide it: treated as compiled.
    Unknown,
    NotCompiled(&'c Decider),
}

/// A region's state: a decider by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Compiled,
    Unknown,
    NotCompiled(usize),
}

/// Lines from `first` on, up to the next region, are in `state`.
#[derive(Debug, Clone, Copy)]
struct Region {
    first: u32,
    state: State,
}

/// One `#if` group being read.
struct Group {
    /// The state around the group.
    outer: State,
    /// Whether an earlier branch is taken.
    taken: Truth,
    /// The branch certainly taken, when one is: its line, text and symbols.
    taken_by: Option<(u32, String, Vec<String>)>,
    /// The first line of its `#if`.
    opened: u32,
    seen_else: bool,
}

/// Which lines of one file a configuration compiles.
#[derive(Debug, Clone)]
pub(crate) struct Conditions {
    /// By first line, ascending; the first starts at line 1.
    regions: Vec<Region>,
    deciders: Vec<Decider>,
    /// The byte offset of each line's start (index 0 is line 1).
    line_starts: Vec<usize>,
    /// `CONFIG_` names the file itself defines or undefines.
    overridden: HashSet<String>,
}

impl Conditions {
    /// Reads the conditionals of a file (`scan` is its scan): linear in the file.
    pub(crate) fn new(text: &[u8], scan: &Scan, config: &KernelConfig) -> Conditions {
        let line_starts = super::scan::line_starts(text);
        let overridden = scan
            .directives
            .iter()
            .filter(|d| matches!(d.kind, DirectiveKind::Define | DirectiveKind::Undef))
            .filter_map(|d| d.name.clone())
            .filter(|name| name.starts_with("CONFIG_"))
            .collect();
        let mut conditions = Conditions {
            regions: vec![Region {
                first: 1,
                state: State::Compiled,
            }],
            deciders: Vec::new(),
            line_starts,
            overridden,
        };
        conditions.read(text, scan, config);
        conditions
    }

    /// Whether `line` is compiled.
    pub(crate) fn state(&self, line: u32) -> LineState<'_> {
        let i = self.regions.partition_point(|r| r.first <= line);
        match i.checked_sub(1).map(|i| self.regions[i].state) {
            Some(State::NotCompiled(d)) => match self.deciders.get(d) {
                Some(decider) => LineState::NotCompiled(decider),
                None => LineState::Unknown,
            },
            Some(State::Unknown) => LineState::Unknown,
            Some(State::Compiled) | None => LineState::Compiled,
        }
    }

    /// The bytes of a directive's lines, spliced.
    fn directive_bytes(&self, text: &[u8], d: &Directive) -> Vec<u8> {
        let start = self
            .line_starts
            .get(d.first as usize - 1)
            .copied()
            .unwrap_or(text.len());
        let end = self
            .line_starts
            .get(d.last as usize)
            .copied()
            .unwrap_or(text.len())
            .max(start);
        splice(&text[start..end])
    }

    /// The expression of a `#if` or `#elif`: what follows its word, spliced.
    pub(crate) fn expression(&self, text: &[u8], d: &Directive) -> Vec<u8> {
        let bytes = self.directive_bytes(text, d);
        let hash = bytes.iter().position(|&b| b == b'#').map_or(0, |i| i + 1);
        let mut i = hash;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        bytes[i..].to_vec()
    }

    /// A `#if` or `#elif`'s value here (the file's own `CONFIG_` definitions unknown).
    pub(crate) fn evaluate(&self, text: &[u8], d: &Directive, config: &KernelConfig) -> Truth {
        evaluate(&self.expression(text, d), config, &self.overridden).0
    }

    /// A directive as one line of text, for a reason.
    fn shown(&self, text: &[u8], d: &Directive) -> String {
        let bytes = self.directive_bytes(text, d);
        let words = String::from_utf8_lossy(&bytes);
        let one_line: Vec<&str> = words.split_whitespace().collect();
        let one_line = one_line.join(" ");
        if one_line.chars().count() > DIRECTIVE_CHARS {
            let cut: String = one_line.chars().take(DIRECTIVE_CHARS).collect();
            format!("{cut}...")
        } else {
            one_line
        }
    }

    /// A condition's value and the symbols it tests.
    fn condition(&self, text: &[u8], d: &Directive, config: &KernelConfig) -> (Truth, Vec<String>) {
        match d.kind {
            DirectiveKind::Ifdef | DirectiveKind::Ifndef => {
                let Some(name) = d.name.as_deref() else {
                    return (Truth::Unknown, Vec::new());
                };
                let base = name.strip_suffix("_MODULE").unwrap_or(name);
                if !name.starts_with("CONFIG_")
                    || self.overridden.contains(name)
                    || self.overridden.contains(base)
                {
                    return (Truth::Unknown, Vec::new());
                }
                let defined = config.is_macro_defined(name);
                let truth = if defined == (d.kind == DirectiveKind::Ifdef) {
                    Truth::True
                } else {
                    Truth::False
                };
                (truth, vec![name.to_owned()])
            }
            _ => evaluate(&self.expression(text, d), config, &self.overridden),
        }
    }

    fn push(&mut self, first: u32, state: State) {
        if let Some(last) = self.regions.last_mut() {
            if last.first == first {
                last.state = state;
                let n = self.regions.len();
                if n >= 2 && self.regions[n - 2].state == state {
                    self.regions.pop();
                }
                return;
            }
            if last.state == state {
                return;
            }
        }
        self.regions.push(Region { first, state });
    }

    fn decider(&mut self, line: u32, text: String, why: String) -> State {
        self.deciders.push(Decider { line, text, why });
        State::NotCompiled(self.deciders.len() - 1)
    }

    /// From `line` on, the nesting is not known: every line is unknown.
    fn unbalanced_from(&mut self, line: u32) {
        while self.regions.last().is_some_and(|r| r.first >= line) {
            self.regions.pop();
        }
        self.regions.push(Region {
            first: line,
            state: State::Unknown,
        });
    }

    fn read(&mut self, text: &[u8], scan: &Scan, config: &KernelConfig) {
        let with = |config: &KernelConfig, symbols: &[String]| -> String {
            if symbols.is_empty() {
                String::new()
            } else {
                let described: Vec<String> = symbols.iter().map(|s| config.describe(s)).collect();
                format!(" with {}", described.join(", "))
            }
        };
        let mut current = State::Compiled;
        let mut groups: Vec<Group> = Vec::new();
        for d in &scan.directives {
            match d.kind {
                DirectiveKind::If | DirectiveKind::Ifdef | DirectiveKind::Ifndef => {
                    self.push(d.first, current);
                    let (truth, symbols) = if matches!(current, State::NotCompiled(_)) {
                        (Truth::Unknown, Vec::new())
                    } else {
                        self.condition(text, d, config)
                    };
                    let shown = self.shown(text, d);
                    let branch = match (current, truth) {
                        (State::NotCompiled(_), _) => current,
                        (_, Truth::False) => {
                            let why =
                                format!("`{shown}` (line {}){}", d.first, with(config, &symbols));
                            self.decider(d.first, shown.clone(), why)
                        }
                        (_, Truth::Unknown) => State::Unknown,
                        (_, Truth::True) => current,
                    };
                    groups.push(Group {
                        outer: current,
                        taken: truth,
                        taken_by: (truth == Truth::True).then_some((d.first, shown, symbols)),
                        opened: d.first,
                        seen_else: false,
                    });
                    current = branch;
                    self.push(d.last.saturating_add(1), current);
                }
                DirectiveKind::Elif | DirectiveKind::Else => {
                    let Some(group) = groups.last() else {
                        return self.unbalanced_from(d.first);
                    };
                    if group.seen_else {
                        return self.unbalanced_from(d.first);
                    }
                    let (outer, taken, taken_by) =
                        (group.outer, group.taken, group.taken_by.clone());
                    let is_else = d.kind == DirectiveKind::Else;
                    let shown = self.shown(text, d);
                    // The branch's state, and the directive line's own: an `#elif` is
                    // evaluated only when no branch before it was taken.
                    let (line_state, branch, truth, symbols) = match (outer, &taken_by) {
                        (State::NotCompiled(_), _) => (outer, outer, Truth::Unknown, Vec::new()),
                        (_, Some((line, taken_text, symbols))) => {
                            // A branch after one certainly taken is certainly not taken.
                            let why = format!(
                                "`{shown}` (line {}) after `{taken_text}` (line {line}), which is taken{}",
                                d.first,
                                with(config, symbols)
                            );
                            let not = self.decider(*line, taken_text.clone(), why);
                            (
                                if is_else { outer } else { not },
                                not,
                                Truth::Unknown,
                                Vec::new(),
                            )
                        }
                        (_, None) => {
                            let (truth, symbols) = if is_else {
                                (Truth::True, Vec::new())
                            } else {
                                self.condition(text, d, config)
                            };
                            // After an unknown branch, this one is at best unknown.
                            let effective = match (taken, truth) {
                                (Truth::False, truth) => truth,
                                (_, Truth::False) => Truth::False,
                                _ => Truth::Unknown,
                            };
                            let branch = match effective {
                                Truth::True => outer,
                                Truth::Unknown => State::Unknown,
                                Truth::False => {
                                    let why = format!(
                                        "`{shown}` (line {}){}",
                                        d.first,
                                        with(config, &symbols)
                                    );
                                    self.decider(d.first, shown.clone(), why)
                                }
                            };
                            let line_state = if !is_else && taken == Truth::Unknown {
                                State::Unknown
                            } else {
                                outer
                            };
                            (line_state, branch, truth, symbols)
                        }
                    };
                    self.push(d.first, line_state);
                    if let Some(group) = groups.last_mut() {
                        if group.taken_by.is_none() && truth == Truth::True && !is_else {
                            group.taken_by = Some((d.first, shown, symbols));
                        }
                        group.taken = group.taken.or(truth);
                        group.seen_else |= is_else;
                    }
                    current = branch;
                    self.push(d.last.saturating_add(1), current);
                }
                DirectiveKind::Endif => {
                    let Some(group) = groups.pop() else {
                        return self.unbalanced_from(d.first);
                    };
                    current = group.outer;
                    self.push(d.first, current);
                }
                _ => {}
            }
        }
        if let Some(outermost) = groups.first() {
            let opened = outermost.opened;
            self.unbalanced_from(opened);
        }
    }
}

/// Whether every occurrence of the identifier `name` in a `#if` expression is the
/// operand of `defined` (`defined NAME`, `defined(NAME)`), and there is one: then a new
/// body of the macro `name` does not change the condition.
pub(crate) fn only_under_defined(expression: &[u8], name: &str) -> bool {
    let tokens = tokens(expression);
    let is = |i: Option<usize>, word: &str| match i.and_then(|i| tokens.get(i)) {
        Some(Tok::Ident(s, e)) => &expression[*s..*e] == word.as_bytes(),
        _ => false,
    };
    let mut found = false;
    for (i, tok) in tokens.iter().enumerate() {
        let Tok::Ident(s, e) = *tok else { continue };
        if &expression[s..e] != name.as_bytes() {
            continue;
        }
        let bare = is(i.checked_sub(1), "defined");
        let parenthesised = i >= 2
            && tokens[i - 1] == Tok::LParen
            && is(Some(i - 2), "defined")
            && tokens.get(i + 1) == Some(&Tok::RParen);
        if !(bare || parenthesised) {
            return false;
        }
        found = true;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::scan::scan;

    fn config() -> KernelConfig {
        KernelConfig::parse(
            b"CONFIG_ON=y\nCONFIG_MOD=m\n# CONFIG_OFF is not set\nCONFIG_NUM=12\nCONFIG_BIG=0xffffffffffffffff\nCONFIG_ONE=1\nCONFIG_NAME=\"x\"\n",
        )
        .unwrap()
    }

    fn eval(expression: &str) -> Truth {
        evaluate_if(expression.as_bytes(), &config())
    }

    #[test]
    fn configuration_tests_follow_kconfig_h() {
        use Truth::*;
        for (expression, expected) in [
            ("defined(CONFIG_ON)", True),
            ("defined CONFIG_ON", True),
            ("defined(CONFIG_OFF)", False),
            ("defined(CONFIG_UNMENTIONED)", False),
            ("defined(CONFIG_MOD)", False),
            ("defined(CONFIG_MOD_MODULE)", True),
            ("IS_ENABLED(CONFIG_ON)", True),
            ("IS_ENABLED(CONFIG_MOD)", True),
            ("IS_ENABLED(CONFIG_OFF)", False),
            ("IS_BUILTIN(CONFIG_MOD)", False),
            ("IS_BUILTIN(CONFIG_ON)", True),
            ("IS_BUILTIN(CONFIG_ONE)", True),
            ("IS_BUILTIN(CONFIG_NUM)", False),
            ("IS_MODULE(CONFIG_MOD)", True),
            ("IS_MODULE(CONFIG_ON)", False),
            ("IS_REACHABLE(CONFIG_ON)", True),
            ("IS_REACHABLE(CONFIG_MOD)", Unknown),
            ("IS_REACHABLE(CONFIG_OFF)", False),
            ("CONFIG_ON", True),
            ("CONFIG_MOD", False),
            ("CONFIG_MOD_MODULE", True),
            ("CONFIG_OFF", False),
            ("CONFIG_NUM == 12", True),
            ("CONFIG_NUM > 12", False),
            ("CONFIG_BIG > 0", True),
            ("CONFIG_BIG == -1", True),
            ("CONFIG_NAME == 0", Unknown),
            ("defined(CONFIG_NAME)", True),
            // Not the configuration's: not known.
            ("defined(FOO_H)", Unknown),
            ("FOO", Unknown),
            ("IS_ENABLED(FOO)", Unknown),
            ("__has_attribute(__fallthrough__)", Unknown),
            ("LINUX_VERSION_CODE >= KERNEL_VERSION(5, 10, 0)", Unknown),
        ] {
            assert_eq!(eval(expression), expected, "{expression}");
        }
    }

    #[test]
    fn unknown_is_carried_as_c_would_any_value() {
        use Truth::*;
        for (expression, expected) in [
            ("FOO && 0", False),
            ("0 && FOO", False),
            ("FOO && 1", Unknown),
            ("FOO || 1", True),
            ("1 || FOO", True),
            ("FOO || 0", Unknown),
            ("!FOO", Unknown),
            ("FOO ? 1 : 1", True),
            ("FOO ? 1 : 0", Unknown),
            ("FOO ? 0 : 0", False),
            ("defined(CONFIG_OFF) && FOO(1, (2))", False),
            ("defined(CONFIG_ON) || BAR > 3", True),
            ("1 ? 2 : FOO", True),
            ("0 ? FOO : 0", False),
            ("FOO + 1", Unknown),
        ] {
            assert_eq!(eval(expression), expected, "{expression}");
        }
    }

    #[test]
    fn operators_bind_as_in_c() {
        use Truth::*;
        for (expression, expected) in [
            ("1 + 2 * 3 == 7", True),
            ("(1 + 2) * 3 == 9", True),
            ("1 << 2 + 1 == 8", True),
            ("1 | 2 ^ 3 & 1", True),
            ("(1 | 2 ^ 3 & 1) == 3", True),
            ("2 > 1 == 1", True),
            ("1 ? 0 : 1", False),
            ("0 ? 1 : 0 ? 1 : 2", True),
            ("(0 ? 1 : 0 ? 1 : 2) == 2", True),
            ("1 || 0 && 0", True),
            ("(1 || 0) && 0", False),
            ("-1 < 0", True),
            ("-1 < 0u", False),
            ("~0 == -1", True),
            ("~0u == 0xffffffffffffffff", True),
            ("!0 + !0 == 2", True),
            ("10 / 3 == 3 && 10 % 3 == 1 && -7 / 2 == -3", True),
            ("0x10 == 16 && 010 == 8 && 0b101 == 5 && 12UL == 12", True),
            (
                "'a' == 97 && '\\n' == 10 && '\\0' == 0 && '\\x41' == 65",
                True,
            ),
            ("- - 3 == 3 && +3 == 3", True),
            ("1 >> 1", False),
            ("-8 >> 1 == -4", True),
            ("18446744073709551615 == -1", True),
            ("CONFIG_NUM / (CONFIG_NUM - 12)", Unknown),
            ("1 % 0", Unknown),
            ("1 << 64", Unknown),
            ("1 << -1", Unknown),
            ("0x7fffffffffffffff + 1", Unknown),
            ("-0x7fffffffffffffff - 1 == 0x8000000000000000", True),
            ("1 /* a comment */ && // another\n 1", True),
            ("1 && \\\n 0", False),
        ] {
            assert_eq!(eval(expression), expected, "{expression}");
        }
    }

    #[test]
    fn malformed_expressions_are_unknown_not_a_panic() {
        for expression in [
            "",
            "(",
            ")",
            "1 +",
            "1 2",
            "defined",
            "defined(",
            "defined(CONFIG_ON",
            "defined()",
            "1 ? 2",
            "? :",
            "1.5",
            "1e5",
            "0x",
            "08",
            "1uuu",
            "\"str\"",
            "'ab'",
            "'",
            "1 = 1",
            "FOO(",
            "IS_ENABLED(CONFIG_ON",
            "#",
            ",",
            "1, 2",
            "\u{e9}",
            "CONFIG_ON)",
        ] {
            assert_eq!(eval(expression), Truth::Unknown, "{expression:?}");
        }
    }

    #[test]
    fn deep_nesting_is_unknown_and_long_chains_are_evaluated() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(eval(&deep), Truth::Unknown);
        assert_eq!(eval(&"!".repeat(100_000)), Truth::Unknown);
        let nested = format!("{}1{}", "(".repeat(20), ")".repeat(20));
        assert_eq!(eval(&nested), Truth::True);
        let ternaries = format!("{}1{}", "1 ? ".repeat(100_000), " : 0".repeat(100_000));
        assert_eq!(eval(&ternaries), Truth::Unknown);
        // A flat chain is a loop, however long.
        let chain = format!("0{}", " || 0".repeat(200_000));
        assert_eq!(eval(&chain), Truth::False);
        let sum = format!("1{} == 100001", " + 1".repeat(100_000));
        assert_eq!(eval(&sum), Truth::True);
    }

    fn states(text: &str, config: &KernelConfig) -> Vec<char> {
        let scanned = scan(text.as_bytes());
        let conditions = Conditions::new(text.as_bytes(), &scanned, config);
        (1..=text.lines().count() as u32)
            .map(|line| match conditions.state(line) {
                LineState::Compiled => 'c',
                LineState::Unknown => '?',
                LineState::NotCompiled(_) => 'n',
            })
            .collect()
    }

    #[test]
    fn lines_follow_the_nesting_of_conditionals() {
        let text = "\
#ifndef GUARD_H
#define GUARD_H
#ifdef CONFIG_ON
on
#else
off
#endif
#if IS_ENABLED(CONFIG_OFF)
x
#elif CONFIG_NUM > 10
y
#elif FOO
z
#else
w
#endif
#if FOO
a
#elif defined(CONFIG_ON)
b
#else
c
#endif
#endif
after";
        let got: String = states(text, &config()).into_iter().collect();
        // The guard is unknown, the lines in it at best unknown; `#elif FOO` after a
        // taken branch is not even evaluated.
        assert_eq!(got, "c????n??n??nn?n??????n?cc");
    }

    #[test]
    fn not_compiled_lines_keep_the_directive_that_decided() {
        let text = "int a;\n#ifdef CONFIG_ON\nint b;\n#else\nint c;\n#endif\n#if defined(CONFIG_OFF) && \\\n    CONFIG_NUM > 1\nint d;\n#ifdef CONFIG_ON\nint e;\n#endif\n#endif\n";
        let scanned = scan(text.as_bytes());
        let config = config();
        let conditions = Conditions::new(text.as_bytes(), &scanned, &config);
        let LineState::NotCompiled(decider) = conditions.state(5) else {
            panic!("line 5 is compiled");
        };
        assert_eq!(decider.line, 2);
        assert_eq!(decider.text, "#ifdef CONFIG_ON");
        assert_eq!(
            decider.why,
            "`#else` (line 4) after `#ifdef CONFIG_ON` (line 2), which is taken with CONFIG_ON=y"
        );
        // The continuation line of the `#if` is the directive's, outside its group.
        assert_eq!(conditions.state(8), LineState::Compiled);
        for line in [9, 10, 11, 12] {
            let LineState::NotCompiled(decider) = conditions.state(line) else {
                panic!("line {line} is compiled");
            };
            assert_eq!(decider.line, 7);
            assert_eq!(
                decider.why,
                "`#if defined(CONFIG_OFF) && CONFIG_NUM > 1` (line 7) with CONFIG_OFF not set, CONFIG_NUM=12"
            );
        }
        assert_eq!(conditions.state(13), LineState::Compiled);
        assert_eq!(conditions.state(3), LineState::Compiled);
    }

    #[test]
    fn an_unbalanced_file_is_unknown_from_there_never_not_compiled() {
        let config = config();
        // An `#endif` too many: unknown from it on.
        let got: String = states(
            "#ifdef CONFIG_OFF\na\n#endif\n#endif\n#ifdef CONFIG_OFF\nb\n#endif\n",
            &config,
        )
        .into_iter()
        .collect();
        assert_eq!(got, "cnc????");
        // One missing: unknown from the group left open.
        let got: String = states(
            "a\n#ifdef CONFIG_OFF\nb\n#endif\n#ifdef CONFIG_ON\nc\n#ifdef CONFIG_OFF\nd\n",
            &config,
        )
        .into_iter()
        .collect();
        assert_eq!(got, "ccnc????");
        // An `#else` after `#else`.
        let got: String = states("#ifdef CONFIG_ON\na\n#else\nb\n#else\nc\n#endif\n", &config)
            .into_iter()
            .collect();
        assert_eq!(got, "cccn???");
    }

    #[test]
    fn a_file_defining_a_config_symbol_does_not_take_it_from_the_configuration() {
        let got: String = states(
            "#undef CONFIG_ON\n#ifdef CONFIG_ON\na\n#endif\n#if IS_ENABLED(CONFIG_OFF)\nb\n#endif\n",
            &config(),
        )
        .into_iter()
        .collect();
        assert_eq!(got, "cc?ccnc");
    }

    #[test]
    fn defined_only_is_told_apart() {
        assert!(only_under_defined(b"defined(FOO) && CONFIG_X", "FOO"));
        assert!(only_under_defined(b"defined FOO || defined(FOO)", "FOO"));
        assert!(!only_under_defined(b"defined(FOO) && FOO > 1", "FOO"));
        assert!(!only_under_defined(b"FOO", "FOO"));
        assert!(!only_under_defined(b"defined(BAR)", "FOO"));
        assert!(!only_under_defined(b"defined(FOO", "FOO"));
    }
}
