//! Where the compiler put a function: its out-of-line code and clones, every function it
//! was inlined into, and who calls it. The question a reviewer asks before trusting a
//! list of functions to replace, answered from the index.

use crate::index::{Callee, KernelIndex, ObjectIndex};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One out-of-line instance of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfLine {
    /// Its symbol (`foo`, `foo.isra.0`, ...), or `None` when no symbol starts at it.
    pub symbol: Option<String>,
    /// `old_sympos` of the symbol.
    pub old_sympos: u32,
    /// Its section.
    pub section: String,
    /// The compilation unit it was compiled in.
    pub unit: String,
    /// Whether ftrace can redirect it.
    pub traceable: bool,
    /// How a clone's calling convention differs from the declaration.
    pub abi_change: Option<String>,
}

/// Where one function (a name and a declaration) went in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The function's name.
    pub name: String,
    /// `vmlinux` or the module.
    pub object: String,
    /// Declaring file.
    pub decl_file: String,
    /// Declaring line.
    pub decl_line: u32,
    /// Declared `inline`.
    pub declared_inline: bool,
    /// Its out-of-line code.
    pub out_of_line: Vec<OutOfLine>,
    /// How many inlined copies there are.
    pub inline_sites: usize,
    /// The out-of-line functions holding those copies, with how many each.
    pub inlined_into: BTreeMap<String, usize>,
    /// The functions that call it directly.
    pub callers: BTreeSet<String>,
}

/// Every function named `name` in the index, in index order.
pub fn placements(index: &KernelIndex, name: &str) -> Vec<Placement> {
    index
        .objects
        .iter()
        .flat_map(|object| in_object(object, name))
        .collect()
}

fn in_object(object: &ObjectIndex, name: &str) -> Vec<Placement> {
    let from = object.functions.partition_point(|f| f.name.as_str() < name);
    let by_address = object.symbols_by_address();
    let mut found = Vec::new();
    for f in (from..object.functions.len()).take_while(|&f| object.functions[f].name == name) {
        let function = &object.functions[f];
        let id = f as u32;
        let instances = object.instances_of(id);
        let out_of_line = instances
            .clone()
            .map(|i| {
                let instance = &object.instances[i];
                let symbol = by_address.of_instance(instance);
                OutOfLine {
                    symbol: symbol.map(|s| s.name.clone()),
                    old_sympos: symbol.map_or(0, |s| s.old_sympos),
                    section: symbol.map_or_else(String::new, |s| s.section.clone()),
                    unit: object.file_name(instance.unit).to_owned(),
                    traceable: symbol.is_some_and(|s| s.ftrace_entry),
                    abi_change: instance.abi_change.clone(),
                }
            })
            .collect();
        // A container by its symbol, or by its function's name when it has none.
        let container_name = |instance: u32| {
            let instance = &object.instances[instance as usize];
            by_address.of_instance(instance).map_or_else(
                || object.function_name(instance.function).to_owned(),
                |s| s.name.clone(),
            )
        };
        let mut inlined_into: BTreeMap<String, usize> = BTreeMap::new();
        let mut inline_sites = 0;
        for site in object.inline_sites_of(id) {
            inline_sites += 1;
            *inlined_into
                .entry(container_name(site.container))
                .or_default() += 1;
        }
        let callers = std::iter::once(Callee::Function(id))
            .chain(instances.map(|i| Callee::Instance(i as u32)))
            .flat_map(|callee| object.calls_to(callee))
            .map(|call| container_name(call.caller))
            .collect();
        found.push(Placement {
            name: function.name.clone(),
            object: object.name.clone(),
            decl_file: object.file_name(function.decl_file).to_owned(),
            decl_line: function.decl_line,
            declared_inline: function.declared_inline,
            out_of_line,
            inline_sites,
            inlined_into,
            callers,
        });
    }
    found
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inline = if self.declared_inline { "inline " } else { "" };
        writeln!(
            f,
            "{inline}{}()  {}:{}  in {}",
            self.name, self.decl_file, self.decl_line, self.object
        )?;
        if self.out_of_line.is_empty() {
            writeln!(f, "  no out-of-line code")?;
        }
        for code in &self.out_of_line {
            let symbol = code.symbol.as_deref().unwrap_or("(no symbol)");
            let sympos = if code.old_sympos > 0 {
                format!(", old_sympos {}", code.old_sympos)
            } else {
                String::new()
            };
            let ftrace = if code.traceable {
                "ftrace entry"
            } else {
                "no ftrace entry"
            };
            write!(
                f,
                "  out of line: {symbol} ({}, {ftrace}{sympos})",
                code.section
            )?;
            match &code.abi_change {
                Some(change) => writeln!(f, "; calling convention changed: {change}")?,
                None => writeln!(f)?,
            }
        }
        writeln!(
            f,
            "  inlined {} time(s) into {} function(s)",
            self.inline_sites,
            self.inlined_into.len()
        )?;
        for (container, copies) in &self.inlined_into {
            writeln!(f, "    {container} ({copies})")?;
        }
        writeln!(f, "  called directly by {} function(s)", self.callers.len())?;
        for caller in &self.callers {
            writeln!(f, "    {caller}")?;
        }
        Ok(())
    }
}
