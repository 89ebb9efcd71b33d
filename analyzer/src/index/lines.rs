//! The line table reduced to places: for each file:line, the instance or inlined copy its
//! code went into, kept encoded per file.

use super::varint::{Blob, Varints};
use super::{IndexError, LinePlace, Place};

/// The line table reduced to places, kept encoded per file: a query decodes only the
/// files it asks about (the whole table is the largest part of an index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    /// Per file with code, in file order: where its rows are in `rows`.
    pub(super) files: Vec<LineFile>,
    /// Per file, rows of (line, place) as varint differences to the previous row.
    pub(super) rows: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineFile {
    pub(super) file: u32,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) count: u32,
}

impl LineTable {
    /// Encodes places sorted by file, line and place.
    pub fn from_places(places: &[LinePlace]) -> LineTable {
        let mut table = LineTable::default();
        let mut rows = Blob::new();
        let mut at = 0;
        while at < places.len() {
            let file = places[at].file;
            let start = rows.0.len();
            let (mut line, mut place) = (0i64, 0u64);
            let mut count = 0;
            while let Some(p) = places.get(at).filter(|p| p.file == file) {
                rows.i(i64::from(p.line) - line);
                let code = place_code(p.place);
                rows.i(code.wrapping_sub(place) as i64);
                (line, place) = (i64::from(p.line), code);
                count += 1;
                at += 1;
            }
            table.files.push(LineFile {
                file,
                start,
                end: rows.0.len(),
                count,
            });
        }
        table.rows = rows.0;
        table
    }

    /// How many (file, line, place) rows there are.
    pub fn len(&self) -> usize {
        self.files.iter().map(|f| f.count as usize).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The rows of one file: (line, place), sorted.
    pub fn file(&self, file: u32) -> Result<Vec<(u32, Place)>, IndexError> {
        let Ok(i) = self.files.binary_search_by_key(&file, |f| f.file) else {
            return Ok(Vec::new());
        };
        let entry = self.files[i];
        let damaged = |e: String| IndexError::Damaged(format!("file {file}: {e}"));
        let bytes = self
            .rows
            .get(entry.start..entry.end)
            .ok_or_else(|| damaged("rows outside the table".into()))?;
        let mut rows = Varints::new("line", bytes);
        let mut out = Vec::with_capacity((entry.count as usize).min(bytes.len()));
        let (mut line, mut place) = (0i64, 0u64);
        for _ in 0..entry.count {
            line += rows.i().map_err(damaged)?;
            place = place.wrapping_add(rows.i().map_err(damaged)? as u64);
            let line = u32::try_from(line).map_err(|_| damaged("a line is out of range".into()))?;
            out.push((line, place_of_code(place).map_err(damaged)?));
        }
        rows.finish().map_err(damaged)?;
        Ok(out)
    }

    /// Every row, decoded.
    pub fn all(&self) -> Result<Vec<LinePlace>, IndexError> {
        let mut out = Vec::with_capacity(self.len());
        for entry in &self.files {
            out.extend(
                self.file(entry.file)?
                    .into_iter()
                    .map(|(line, place)| LinePlace {
                        file: entry.file,
                        line,
                        place,
                    }),
            );
        }
        Ok(out)
    }
}

fn place_code(p: Place) -> u64 {
    match p {
        Place::Instance(i) => u64::from(i) << 1,
        Place::Inlined(s) => (u64::from(s) << 1) | 1,
    }
}

fn place_of_code(code: u64) -> Result<Place, String> {
    let id = u32::try_from(code >> 1).map_err(|_| format!("place {code} is out of range"))?;
    Ok(if code & 1 == 0 {
        Place::Instance(id)
    } else {
        Place::Inlined(id)
    })
}
