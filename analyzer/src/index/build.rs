//! Building an object's index from its symbol table and debug information: functions
//! merged across compilation units, instances, inlined copies, calls, and the line table
//! reduced to places.

use super::*;
use crate::dwarf::{clone_abi_change, DieOffset, DwarfIndex};
use std::collections::{BTreeMap, HashMap};

/// The hash rustc uses for its own tables (FxHash): several times faster than SipHash on
/// the integer and short-string keys here. Its weakness, chosen collisions, matters for
/// inputs an attacker writes; these are the user's own kernel build.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// The identity of a function across compilation units.
type FunctionKey<'a> = (&'a str, Option<&'a str>, u32);

/// Builds the tables of one object from its DWARF tables.
pub(super) struct Builder<'a> {
    dwarf: &'a DwarfIndex,
    file_ids: FastMap<&'a str, u32>,
    /// The function each subprogram DIE stands for.
    function_of_die: FastMap<DieOffset, u32>,
    functions: Vec<Function>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(dwarf: &'a DwarfIndex) -> Builder<'a> {
        let file_ids = (0..)
            .zip(&dwarf.files)
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let mut builder = Builder {
            dwarf,
            file_ids,
            function_of_die: FastMap::default(),
            functions: Vec::new(),
        };
        builder.functions();
        builder
    }

    fn file_id(&mut self, name: Option<&'a str>) -> Option<u32> {
        let name = name?;
        if let Some(&id) = self.file_ids.get(name) {
            return Some(id);
        }
        // A declaration file no line table names: files grow at the end.
        let id = u32::try_from(self.file_ids.len()).ok()?;
        self.file_ids.insert(name, id);
        Some(id)
    }

    /// One function per key; external declarations join the one definition of their name.
    fn functions(&mut self) {
        let subprograms = &self.dwarf.subprograms;
        let key = |s: &'a dwarf::Subprogram| -> Option<FunctionKey<'a>> {
            Some((s.name.as_deref()?, s.decl_file.as_deref(), s.decl_line))
        };
        let defines = |s: &dwarf::Subprogram| s.is_abstract || !s.ranges.is_empty();
        let mut external_definitions: FastMap<&str, Vec<FunctionKey<'a>>> = FastMap::default();
        for s in subprograms.iter().filter(|s| s.external && defines(s)) {
            if let Some(k) = key(s) {
                external_definitions.entry(k.0).or_default().push(k);
            }
        }
        for keys in external_definitions.values_mut() {
            keys.sort_unstable();
            keys.dedup();
        }
        let key_of = |s: &'a dwarf::Subprogram| -> Option<FunctionKey<'a>> {
            let own = key(s)?;
            if s.declaration && s.external && !defines(s) {
                if let Some([definition]) = external_definitions.get(own.0).map(Vec::as_slice) {
                    return Some(*definition);
                }
            }
            Some(own)
        };
        let mut by_key: BTreeMap<FunctionKey<'a>, Function> = BTreeMap::new();
        for s in subprograms {
            let Some(k) = key_of(s) else { continue };
            let function = by_key.entry(k).or_insert_with(|| Function {
                name: k.0.to_owned(),
                decl_file: None,
                decl_line: k.2,
                declared_inline: false,
                external: false,
                defined: false,
            });
            function.declared_inline |= s.declared_inline;
            function.external |= s.external;
            function.defined |= defines(s);
        }
        let keys: Vec<FunctionKey<'a>> = by_key.keys().copied().collect();
        let ids: FastMap<FunctionKey<'a>, u32> = keys.iter().copied().zip(0..).collect();
        for s in subprograms {
            if let Some(id) = key_of(s).and_then(|k| ids.get(&k)) {
                self.function_of_die.insert(s.die, *id);
            }
        }
        let mut functions: Vec<Function> = by_key.into_values().collect();
        for (function, k) in functions.iter_mut().zip(keys) {
            function.decl_file = self.file_id(k.1);
        }
        self.functions = functions;
    }

    pub(super) fn finish(
        mut self,
        symbols: FunctionTable,
        build_id: Option<String>,
    ) -> ObjectIndex {
        let dwarf = self.dwarf;
        let unit_files: Vec<Option<u32>> = dwarf
            .units
            .iter()
            .map(|u| self.file_id(Some(u.name.as_str()).filter(|n| !n.is_empty())))
            .collect();
        // Instances, sorted by function and entry.
        let mut instances: Vec<(DieOffset, Instance)> = dwarf
            .subprograms
            .iter()
            .filter(|s| !s.ranges.is_empty())
            .filter_map(|s| {
                let function = *self.function_of_die.get(&s.die)?;
                let abi_change = s
                    .abstract_origin
                    .and_then(|o| dwarf.subprogram(o))
                    .and_then(|origin| clone_abi_change(s, origin));
                Some((
                    s.die,
                    Instance {
                        function,
                        unit: unit_files.get(s.unit).copied().flatten(),
                        ranges: s.ranges.clone(),
                        abi_change,
                    },
                ))
            })
            .collect();
        instances.sort_by_key(|(_, i)| (i.function, i.entry()));
        let instance_of_die: FastMap<DieOffset, u32> = instances
            .iter()
            .zip(0..)
            .map(|((die, _), id)| (*die, id))
            .collect();

        // Inline sites, sorted by function; parents renumbered.
        let mut sites: Vec<(usize, InlineSite)> = Vec::new();
        for (old, site) in dwarf.inline_sites.iter().enumerate() {
            let (Some(&function), Some(&container)) = (
                self.function_of_die.get(&site.origin),
                instance_of_die.get(&site.container),
            ) else {
                continue;
            };
            let call_file = self.file_id(site.call_file.as_deref());
            sites.push((
                old,
                InlineSite {
                    function,
                    container,
                    // Old index for now.
                    parent: site.parent.and_then(|p| u32::try_from(p).ok()),
                    call_file,
                    call_line: site.call_line,
                },
            ));
        }
        sites.sort_by_key(|(old, s)| (s.container, *old));
        let mut new_of_old: FastMap<u32, u32> = FastMap::default();
        for ((old, _), new) in sites.iter().zip(0u32..) {
            if let Ok(old) = u32::try_from(*old) {
                new_of_old.insert(old, new);
            }
        }
        let inline_sites: Vec<InlineSite> = sites
            .into_iter()
            .map(|(_, mut s)| {
                s.parent = s.parent.and_then(|p| new_of_old.get(&p).copied());
                s
            })
            .collect();

        // Calls, sorted by callee.
        let mut calls: Vec<Call> = dwarf
            .call_sites
            .iter()
            .filter_map(|c| {
                let caller = *instance_of_die.get(&c.caller)?;
                let callee = match instance_of_die.get(&c.callee) {
                    Some(&i) => Callee::Instance(i),
                    None => Callee::Function(*self.function_of_die.get(&c.callee)?),
                };
                Some(Call {
                    caller,
                    callee,
                    tail_call: c.tail_call,
                })
            })
            .collect();
        calls.sort_unstable_by_key(|c| (c.callee, c.caller, c.tail_call));
        calls.dedup();

        let lines = LineTable::from_places(&line_places(
            dwarf,
            &instance_of_die,
            &new_of_old,
            Owners {
                functions: &self.functions,
                instances: &instances,
                sites: &inline_sites,
            },
        ));
        let mut files = dwarf.files.clone();
        let mut extra: Vec<(u32, &str)> = self
            .file_ids
            .iter()
            .filter(|(_, &id)| id as usize >= files.len())
            .map(|(name, &id)| (id, *name))
            .collect();
        extra.sort_unstable();
        files.extend(extra.into_iter().map(|(_, name)| name.to_owned()));

        ObjectIndex {
            name: symbols.object.clone(),
            build_id,
            symbols,
            files,
            functions: self.functions,
            instances: instances.into_iter().map(|(_, i)| i).collect(),
            sites_by_function: sites_by_function(&inline_sites),
            inline_sites,
            calls,
            lines,
            skipped: dwarf.skipped.clone(),
        }
    }
}
/// The tables that say whose source a place is.
struct Owners<'t> {
    functions: &'t [Function],
    instances: &'t [(DieOffset, Instance)],
    sites: &'t [InlineSite],
}

impl Owners<'_> {
    /// Whether function `f` is declared in `file` at or before `line`: whether the line
    /// can be part of its body.
    fn holds(&self, f: u32, file: u32, line: u32) -> bool {
        self.functions
            .get(f as usize)
            .is_some_and(|f| f.decl_file == Some(file) && f.decl_line <= line)
    }

    /// From the innermost inlined copy at an address outwards to the instance, the first
    /// whose function's source holds `file:line`. The copies' address ranges are not
    /// exact: GCC schedules instructions of an inlined body outside the ranges it records
    /// for the copy (a store of `__list_add()` landing among `folio_nr_pages()`'s), so the
    /// innermost copy alone would name the wrong function.
    fn place(&self, site: Option<u32>, instance: u32, file: u32, line: u32) -> Option<Place> {
        let mut at = site;
        let mut steps = 0;
        while let Some(s) = at.filter(|_| steps <= self.sites.len()) {
            let inlined = self.sites.get(s as usize)?;
            if self.holds(inlined.function, file, line) {
                return Some(Place::Inlined(s));
            }
            at = inlined.parent;
            steps += 1;
        }
        let function = self.instances.get(instance as usize)?.1.function;
        self.holds(function, file, line)
            .then_some(Place::Instance(instance))
    }
}

/// The line table as places: for each line range, the inlined copy or instance around its
/// first address whose function's source holds the line. A range none of them can hold
/// is left out (the analysis also finds a line's function by its declaration).
fn line_places(
    dwarf: &DwarfIndex,
    instance_of_die: &FastMap<DieOffset, u32>,
    new_site_of_old: &FastMap<u32, u32>,
    owners: Owners<'_>,
) -> Vec<LinePlace> {
    // Every instance range, by start; instances do not overlap.
    let mut code: Vec<(u64, u64, u32)> = dwarf
        .subprograms
        .iter()
        .filter_map(|s| Some((s, *instance_of_die.get(&s.die)?)))
        .flat_map(|(s, id)| s.ranges.iter().map(move |&(a, b)| (a, b, id)))
        .collect();
    code.sort_unstable();
    // Every inline site range with its depth, flattened into segments that each name the
    // innermost copy covering them.
    let mut site_ranges: Vec<(u64, u64, usize, u32)> = Vec::new();
    for (old, site) in dwarf.inline_sites.iter().enumerate() {
        let Some(&new) = u32::try_from(old)
            .ok()
            .and_then(|o| new_site_of_old.get(&o))
        else {
            continue;
        };
        for &(a, b) in &site.ranges {
            site_ranges.push((a, b, site.chain.len(), new));
        }
    }
    let segments = innermost_segments(site_ranges);

    let find_code = |address: u64| {
        let i = code.partition_point(|&(start, _, _)| start <= address);
        let (_, end, id) = *code.get(i.checked_sub(1)?)?;
        (address < end).then_some(id)
    };
    let find_site = |address: u64| {
        let i = segments.partition_point(|&(start, _)| start <= address);
        segments.get(i.checked_sub(1)?)?.1
    };
    let mut places: Vec<LinePlace> = dwarf
        .lines
        .iter()
        .filter_map(|range| {
            let instance = find_code(range.start)?;
            let place = owners.place(find_site(range.start), instance, range.file, range.line)?;
            Some(LinePlace {
                file: range.file,
                line: range.line,
                place,
            })
        })
        .collect();
    places.sort_unstable();
    places.dedup();
    places
}

/// Nested ranges `(start, end, depth, site)` as sorted, non-overlapping segments
/// `(start, innermost site or None)`: each segment runs to the next one's start.
pub(super) fn innermost_segments(
    mut ranges: Vec<(u64, u64, usize, u32)>,
) -> Vec<(u64, Option<u32>)> {
    // Outer ranges first where several start together.
    ranges.sort_unstable_by_key(|&(start, end, depth, _)| (start, std::cmp::Reverse(end), depth));
    let mut segments: Vec<(u64, Option<u32>)> = Vec::with_capacity(ranges.len() * 2);
    let mut open: Vec<(u64, u32)> = Vec::new(); // (end, site), innermost last
    let close_until = |open: &mut Vec<(u64, u32)>, segments: &mut Vec<(u64, Option<u32>)>, at| {
        while let Some(&(end, _)) = open.last() {
            if end > at {
                break;
            }
            open.pop();
            segments.push((end, open.last().map(|&(_, s)| s)));
        }
    };
    for (start, end, _, site) in ranges {
        close_until(&mut open, &mut segments, start);
        segments.push((start, Some(site)));
        open.push((end, site));
    }
    close_until(&mut open, &mut segments, u64::MAX);
    // Several boundaries at one address: the last one pushed holds from there on.
    let mut flat: Vec<(u64, Option<u32>)> = Vec::with_capacity(segments.len());
    for (start, site) in segments {
        match flat.last_mut() {
            Some(last) if last.0 == start => last.1 = site,
            _ => flat.push((start, site)),
        }
    }
    flat.sort_by_key(|&(start, _)| start);
    flat
}
