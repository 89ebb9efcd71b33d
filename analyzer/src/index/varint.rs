//! Tables as blobs of variable-length integers (LEB128, zigzag for signed), the on-disk
//! index's encoding.

use serde::{Serialize, Serializer};

/// A blob of varints, written as bytes (serde would write a `Vec<u8>` element-wise).
pub(super) struct Blob(pub(super) Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl Blob {
    pub(super) fn new() -> Blob {
        Blob(Vec::new())
    }

    pub(super) fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(super) fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads a blob back.
pub(super) struct Varints<'a> {
    what: &'static str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Varints<'a> {
    pub(super) fn new(what: &'static str, bytes: &'a [u8]) -> Varints<'a> {
        Varints { what, bytes, at: 0 }
    }

    pub(super) fn u(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(format!("the {} table is truncated", self.what));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("the {} table holds an overlong number", self.what))
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let v = self.u()?;
        u32::try_from(v).map_err(|_| format!("the {} table holds {v}, out of range", self.what))
    }

    pub(super) fn i(&mut self) -> Result<i64, String> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub(super) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub(super) fn finish(self) -> Result<(), String> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!("the {} table has bytes left over", self.what))
        }
    }
}
