//! The on-disk form. Strings are stored once each and borrowed on reading; every other
//! table is one blob of variable-length integers, row by row, with sorted fields as
//! differences to the previous row, so most numbers take one or two bytes. Reading
//! walks the blobs once, straight into the final tables, and checks every count and
//! reference: damage is an error, never a panic or a wrong answer.

use super::varint::{Blob, Varints};
use super::{
    sites_by_function, Call, Callee, Function, InlineSite, Instance, LineFile, LineTable,
    ObjectIndex,
};
use crate::dwarf::SkippedUnit;
use crate::symbols::{split_clone_name, Binding, FtraceTable, FunctionSymbol, FunctionTable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Written by [`Object::from`], read as [`ObjectIn`]: the same fields in the same order.
#[derive(Serialize)]
pub(super) struct Object {
    name: String,
    build_id: Option<String>,
    ftrace_table: FtraceTable,
    files: Vec<String>,
    sym_names: Vec<String>,
    sym_sections: Vec<String>,
    /// section, address delta, size, binding | ftrace entry << 2 | exported << 3, sympos
    symbols: Blob,
    fn_name_rests: Vec<String>,
    /// shared prefix with the previous name, decl file + 1, decl line,
    /// declared_inline | external << 1 | defined << 2
    functions: Blob,
    instance_count: u32,
    /// function delta, unit file + 1, range count, (start delta, length) per range
    instances: Blob,
    abi_changes: Vec<(u32, String)>,
    site_count: u32,
    /// container delta, function, own - parent position (0: none), call file + 1
    /// delta, call line delta
    sites: Blob,
    call_count: u32,
    /// callee delta (a function's id, or 2^32 + an instance's), caller << 1 | tail
    calls: Blob,
    /// Per file with code: file delta, byte length of its rows, row count.
    line_files: Blob,
    /// [`LineTable`]'s rows.
    line_rows: Blob,
    skipped: Vec<SkippedUnit>,
}

#[derive(Deserialize)]
pub(super) struct ObjectIn<'a> {
    name: &'a str,
    build_id: Option<&'a str>,
    ftrace_table: FtraceTable,
    files: Vec<&'a str>,
    sym_names: Vec<&'a str>,
    sym_sections: Vec<&'a str>,
    symbols: &'a [u8],
    fn_name_rests: Vec<&'a str>,
    functions: &'a [u8],
    instance_count: u32,
    instances: &'a [u8],
    abi_changes: Vec<(u32, &'a str)>,
    site_count: u32,
    sites: &'a [u8],
    call_count: u32,
    calls: &'a [u8],
    line_files: &'a [u8],
    line_rows: &'a [u8],
    skipped: Vec<SkippedUnit>,
}

impl<'a> ObjectIn<'a> {
    pub(super) fn name(&self) -> &'a str {
        self.name
    }

    pub(super) fn build_id(&self) -> Option<&'a str> {
        self.build_id
    }

    pub(super) fn files(&self) -> &[&'a str] {
        &self.files
    }

    pub(super) fn has_skipped_units(&self) -> bool {
        !self.skipped.is_empty()
    }
}

fn delta(now: u64, before: u64) -> i64 {
    now.wrapping_sub(before) as i64
}

/// Ordered as [`Callee`] is (functions first), so the sorted column only grows.
fn callee_code(c: Callee) -> u64 {
    match c {
        Callee::Function(f) => u64::from(f),
        Callee::Instance(i) => (1 << 32) | u64::from(i),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&ObjectIndex> for Object {
    fn from(o: &ObjectIndex) -> Object {
        let mut sym_sections: Vec<String> = Vec::new();
        let mut section_ids: HashMap<&str, u64> = HashMap::new();
        let mut symbols = Blob::new();
        let mut address = 0;
        for f in &o.symbols.functions {
            let next = section_ids.len() as u64;
            let id = *section_ids.entry(f.section.as_str()).or_insert_with(|| {
                sym_sections.push(f.section.clone());
                next
            });
            symbols.u(id);
            symbols.i(delta(f.address, address));
            address = f.address;
            symbols.u(f.size);
            let binding = match f.binding {
                Binding::Local => 0,
                Binding::Global => 1,
                Binding::Weak => 2,
            };
            symbols.u(binding | (u64::from(f.ftrace_entry) << 2) | (u64::from(f.exported) << 3));
            symbols.u(u64::from(f.old_sympos));
        }

        let mut functions = Blob::new();
        let mut fn_name_rests = Vec::with_capacity(o.functions.len());
        let mut previous = "";
        for f in &o.functions {
            let shared = previous
                .bytes()
                .zip(f.name.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            // Cut on a character boundary so both parts stay UTF-8.
            let shared = (0..=shared)
                .rev()
                .find(|&n| f.name.is_char_boundary(n))
                .unwrap_or(0);
            functions.u(shared as u64);
            fn_name_rests.push(f.name[shared..].to_owned());
            previous = &f.name;
            functions.u(f.decl_file.map_or(0, |f| u64::from(f) + 1));
            functions.u(u64::from(f.decl_line));
            functions.u(u64::from(f.declared_inline)
                | (u64::from(f.external) << 1)
                | (u64::from(f.defined) << 2));
        }

        let mut instances = Blob::new();
        let mut abi_changes = Vec::new();
        let (mut function, mut start) = (0, 0);
        for (i, instance) in (0..).zip(&o.instances) {
            instances.i(i64::from(instance.function) - i64::from(function));
            function = instance.function;
            instances.u(instance.unit.map_or(0, |u| u64::from(u) + 1));
            instances.u(instance.ranges.len() as u64);
            for &(a, b) in &instance.ranges {
                instances.i(delta(a, start));
                instances.u(b.wrapping_sub(a));
                start = a;
            }
            if let Some(change) = &instance.abi_change {
                abi_changes.push((i, change.clone()));
            }
        }

        let mut sites = Blob::new();
        let (mut container, mut file, mut line) = (0, 0, 0);
        for (i, site) in (0u32..).zip(&o.inline_sites) {
            sites.i(i64::from(site.container) - i64::from(container));
            container = site.container;
            sites.u(u64::from(site.function));
            sites.i(site.parent.map_or(0, |p| i64::from(i) - i64::from(p)));
            let f = site.call_file.map_or(0, |f| i64::from(f) + 1);
            sites.i(f - file);
            file = f;
            sites.i(i64::from(site.call_line) - line);
            line = i64::from(site.call_line);
        }

        let mut calls = Blob::new();
        let mut callee = 0;
        for call in &o.calls {
            let code = callee_code(call.callee);
            calls.i(delta(code, callee));
            callee = code;
            calls.u((u64::from(call.caller) << 1) | u64::from(call.tail_call));
        }

        let mut line_files = Blob::new();
        let mut file = 0;
        for f in &o.lines.files {
            line_files.u(u64::from(f.file - file));
            file = f.file;
            line_files.u((f.end - f.start) as u64);
            line_files.u(u64::from(f.count));
        }

        Object {
            name: o.name.clone(),
            build_id: o.build_id.clone(),
            ftrace_table: o.symbols.ftrace_table,
            files: o.files.clone(),
            sym_names: o.symbols.functions.iter().map(|f| f.name.clone()).collect(),
            sym_sections,
            symbols,
            fn_name_rests,
            functions,
            instance_count: count(o.instances.len()),
            instances,
            abi_changes,
            site_count: count(o.inline_sites.len()),
            sites,
            call_count: count(o.calls.len()),
            calls,
            line_files,
            line_rows: Blob(o.lines.rows.clone()),
            skipped: o.skipped.clone(),
        }
    }
}

/// Adds a signed delta to an unsigned running value, refusing to leave `u32`.
fn step(value: u32, by: i64, what: &str) -> Result<u32, String> {
    u32::try_from(i64::from(value) + by).map_err(|_| format!("a {what} is out of range"))
}

impl TryFrom<ObjectIn<'_>> for ObjectIndex {
    type Error = String;

    fn try_from(s: ObjectIn<'_>) -> Result<ObjectIndex, String> {
        let object = s.name;
        let damaged = |what: String| format!("{object}: {what}");
        // Each row takes at least one byte per field: a count beyond that is damage,
        // caught before anything is allocated for it.
        let plausible = |count: u32, bytes: &[u8], fields: usize| -> Result<usize, String> {
            let count = count as usize;
            if count.saturating_mul(fields) > bytes.len() {
                Err(damaged(format!(
                    "{count} rows cannot fit in {} bytes",
                    bytes.len()
                )))
            } else {
                Ok(count)
            }
        };

        // Two independent halves, decoded on two cores: the strings of the symbol
        // and function tables, and the numeric tables.
        let strings = || -> Result<(Vec<FunctionSymbol>, Vec<Function>), String> {
            let mut rows = Varints::new("symbol", s.symbols);
            let mut functions_out = Vec::with_capacity(s.sym_names.len());
            let mut address = 0u64;
            for name in &s.sym_names {
                let section = s
                    .sym_sections
                    .get(rows.u()? as usize)
                    .ok_or_else(|| damaged("a symbol's section is out of range".into()))?;
                address = address.wrapping_add(rows.i()? as u64);
                let size = rows.u()?;
                let flags = rows.u()?;
                let binding = match flags & 3 {
                    0 => Binding::Local,
                    1 => Binding::Global,
                    2 => Binding::Weak,
                    _ => return Err(damaged("a symbol's binding is unknown".into())),
                };
                let (base, clone) = split_clone_name(name);
                functions_out.push(FunctionSymbol {
                    name: (*name).to_owned(),
                    base_name: base.to_owned(),
                    clone,
                    address,
                    size,
                    section: (*section).to_owned(),
                    binding,
                    ftrace_entry: flags & 4 != 0,
                    exported: flags & 8 != 0,
                    old_sympos: rows.u32()?,
                });
            }
            rows.finish().map_err(damaged)?;

            let mut rows = Varints::new("function", s.functions);
            let mut functions: Vec<Function> = Vec::with_capacity(s.fn_name_rests.len());
            for rest in &s.fn_name_rests {
                let shared = rows.u()? as usize;
                let prefix = functions
                    .last()
                    .map_or("", |f| f.name.as_str())
                    .get(..shared)
                    .ok_or_else(|| damaged("a function name's shared prefix is too long".into()))?;
                let mut name = String::with_capacity(prefix.len() + rest.len());
                name.push_str(prefix);
                name.push_str(rest);
                let decl_file = rows.u32()?.checked_sub(1);
                let decl_line = rows.u32()?;
                let flags = rows.u()?;
                functions.push(Function {
                    name,
                    decl_file,
                    decl_line,
                    declared_inline: flags & 1 != 0,
                    external: flags & 2 != 0,
                    defined: flags & 4 != 0,
                });
            }
            rows.finish().map_err(damaged)?;
            Ok((functions_out, functions))
        };
        type Numbers = (Vec<Instance>, Vec<InlineSite>, Vec<Call>, LineTable);
        let numbers = || -> Result<Numbers, String> {
            let mut rows = Varints::new("instance", s.instances);
            let n = plausible(s.instance_count, s.instances, 2)?;
            let mut instances = Vec::with_capacity(n);
            let (mut function, mut start) = (0u32, 0u64);
            for _ in 0..n {
                function = step(function, rows.i()?, "instance's function").map_err(damaged)?;
                let unit = rows.u32()?.checked_sub(1);
                let ranges_count = rows.u()? as usize;
                let mut ranges = Vec::with_capacity(ranges_count.min(64));
                for _ in 0..ranges_count {
                    start = start.wrapping_add(rows.i()? as u64);
                    ranges.push((start, start.wrapping_add(rows.u()?)));
                }
                instances.push(Instance {
                    function,
                    unit,
                    ranges,
                    abi_change: None,
                });
            }
            rows.finish().map_err(damaged)?;
            for &(i, change) in &s.abi_changes {
                instances
                    .get_mut(i as usize)
                    .ok_or_else(|| damaged("an ABI change names no instance".into()))?
                    .abi_change = Some(change.to_owned());
            }

            let mut rows = Varints::new("inline site", s.sites);
            let n = plausible(s.site_count, s.sites, 5)?;
            let mut inline_sites = Vec::with_capacity(n);
            let (mut container, mut file, mut line) = (0u32, 0u32, 0u32);
            for i in 0..n {
                container = step(container, rows.i()?, "site's container").map_err(damaged)?;
                let function = rows.u32()?;
                // Checked here, not only in `check`: the order by function below
                // allocates by the largest one.
                if function as usize >= s.fn_name_rests.len() {
                    return Err(damaged("a site's function is out of range".into()));
                }
                let parent = match rows.i()? {
                    0 => None,
                    d => Some(step(count(i), -d, "site's parent").map_err(damaged)?),
                };
                file = step(file, rows.i()?, "site's call file").map_err(damaged)?;
                line = step(line, rows.i()?, "site's call line").map_err(damaged)?;
                inline_sites.push(InlineSite {
                    function,
                    container,
                    parent,
                    call_file: file.checked_sub(1),
                    call_line: line,
                });
            }
            rows.finish().map_err(damaged)?;

            let mut rows = Varints::new("call", s.calls);
            let n = plausible(s.call_count, s.calls, 2)?;
            let mut calls = Vec::with_capacity(n);
            let mut callee = 0u64;
            for _ in 0..n {
                callee = callee.wrapping_add(rows.i()? as u64);
                let id = (callee & 0xffff_ffff) as u32;
                let callee = match callee >> 32 {
                    0 => Callee::Function(id),
                    1 => Callee::Instance(id),
                    _ => return Err(damaged("a callee is out of range".into())),
                };
                let caller = rows.u()?;
                calls.push(Call {
                    caller: u32::try_from(caller >> 1)
                        .map_err(|_| damaged("a caller is out of range".into()))?,
                    callee,
                    tail_call: caller & 1 != 0,
                });
            }
            rows.finish().map_err(damaged)?;

            let mut rows = Varints::new("line file", s.line_files);
            let mut lines = LineTable {
                files: Vec::new(),
                rows: s.line_rows.to_vec(),
            };
            let (mut file, mut start) = (0u32, 0usize);
            while !rows.is_done() {
                let delta = rows.u32()?;
                if delta == 0 && !lines.files.is_empty() {
                    return Err(damaged("a file's lines are listed twice".into()));
                }
                file = file
                    .checked_add(delta)
                    .ok_or_else(|| damaged("a line's file is out of range".into()))?;
                let end = start
                    .checked_add(rows.u()? as usize)
                    .filter(|&end| end <= lines.rows.len())
                    .ok_or_else(|| damaged("a file's lines run past the table".into()))?;
                let count = rows.u32()?;
                lines.files.push(LineFile {
                    file,
                    start,
                    end,
                    count,
                });
                start = end;
            }
            if start != lines.rows.len() {
                return Err(damaged("the line table has rows no file owns".into()));
            }

            Ok((instances, inline_sites, calls, lines))
        };
        let (strings, numbers) = std::thread::scope(|scope| {
            let strings = scope.spawn(strings);
            let numbers = numbers();
            let strings = strings
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (strings, numbers)
        });
        let (functions_out, functions) = strings?;
        let (instances, inline_sites, calls, lines) = numbers?;

        Ok(ObjectIndex {
            name: object.to_owned(),
            build_id: s.build_id.map(str::to_owned),
            symbols: FunctionTable {
                object: object.to_owned(),
                ftrace_table: s.ftrace_table,
                functions: functions_out,
            },
            files: s.files.iter().map(|f| (*f).to_owned()).collect(),
            functions,
            instances,
            sites_by_function: sites_by_function(&inline_sites),
            inline_sites,
            calls,
            lines,
            skipped: s.skipped,
        })
    }
}
