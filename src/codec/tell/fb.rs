//! A bounds-checked, one-pass reader of the FlatBuffers tables the Tell
//! SDKs write: every offset is checked as it is followed, so decoding a
//! batch reads each field once, with no separate verification pass and no
//! `unsafe`.
//!
//! What a reader may do is bounded by the buffer it reads: following
//! offsets costs "work" (every table's vtable and every byte of every field
//! read, about 1.0–1.3× the buffer for honest batches), and a buffer whose
//! offsets point at the same bytes over and over runs out of it
//! ([`Malformed::TooMuchWork`]) long before its records could expand far
//! beyond its size. Tables cost at least 8 bytes of input each, so more
//! than `len / 8` of them is refused too ([`Malformed::TooManyTables`]).
//!
//! Alignment is not checked: `tell-encoding` aligns tables to 4 bytes only
//! (its 8-byte scalars sit at offsets that are 4 mod 8), and every read here
//! is a byte copy. Strings are read as byte vectors (no UTF-8 or NUL check).

use std::cell::Cell;

use thiserror::Error;

/// Work allowed per input byte (see the module docs).
const WORK_PER_BYTE: usize = 2;
/// Floor for the work limit, so tiny buffers are not judged by ratio.
const MIN_WORK: usize = 64 << 10;
/// A table costs at least 8 bytes of input (its offset slot and its vtable
/// offset).
const MIN_BYTES_PER_TABLE: usize = 8;

/// Why a buffer is not a Tell FlatBuffer this reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Malformed {
    #[error("{what} at byte {at} runs past the end of the buffer")]
    OutOfBounds { what: &'static str, at: usize },
    #[error("required field `{0}` is missing")]
    MissingRequired(&'static str),
    #[error("offsets point at the same bytes over and over (more work than the buffer's size allows)")]
    TooMuchWork,
    #[error("more tables than a buffer of this size can hold")]
    TooManyTables,
}

/// One FlatBuffer and what reading it may still cost.
pub struct Buffer<'a> {
    bytes: &'a [u8],
    work_left: Cell<usize>,
    tables_left: Cell<usize>,
}

impl<'a> Buffer<'a> {
    pub fn new(bytes: &'a [u8]) -> Buffer<'a> {
        Buffer {
            bytes,
            work_left: Cell::new(bytes.len().saturating_mul(WORK_PER_BYTE).max(MIN_WORK)),
            tables_left: Cell::new(bytes.len() / MIN_BYTES_PER_TABLE + 16),
        }
    }

    /// The root table (the `u32` at the start points at it).
    pub fn root(&self) -> Result<Table<'_, 'a>, Malformed> {
        let at = self.u32_at(0, "root offset")?;
        self.table_at(at)
    }

    fn charge(&self, work: usize) -> Result<(), Malformed> {
        let left = self.work_left.get().checked_sub(work).ok_or(Malformed::TooMuchWork)?;
        self.work_left.set(left);
        Ok(())
    }

    fn slice(&self, at: usize, len: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        at.checked_add(len).and_then(|end| self.bytes.get(at..end)).ok_or(Malformed::OutOfBounds { what, at })
    }

    fn array<const N: usize>(&self, at: usize, what: &'static str) -> Result<[u8; N], Malformed> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(at, N, what)?);
        Ok(out)
    }

    fn u32_at(&self, at: usize, what: &'static str) -> Result<usize, Malformed> {
        Ok(u32::from_le_bytes(self.array(at, what)?) as usize)
    }

    fn u16_at(&self, at: usize, what: &'static str) -> Result<usize, Malformed> {
        Ok(usize::from(u16::from_le_bytes(self.array(at, what)?)))
    }

    /// Follows the unsigned offset stored at `at` (relative to `at`).
    fn follow(&self, at: usize, what: &'static str) -> Result<usize, Malformed> {
        at.checked_add(self.u32_at(at, what)?).ok_or(Malformed::OutOfBounds { what, at })
    }

    fn table_at(&self, pos: usize) -> Result<Table<'_, 'a>, Malformed> {
        let left = self.tables_left.get().checked_sub(1).ok_or(Malformed::TooManyTables)?;
        self.tables_left.set(left);
        // The vtable sits at `pos - soffset` (a signed 32-bit distance).
        let soffset = i32::from_le_bytes(self.array(pos, "table")?);
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| usize::try_from(p - i64::from(soffset)).ok())
            .ok_or(Malformed::OutOfBounds { what: "vtable", at: pos })?;
        let vtable_len = self.u16_at(vtable, "vtable")?;
        self.slice(vtable, vtable_len, "vtable")?;
        self.charge(4 + vtable_len)?;
        Ok(Table { buf: self, pos, vtable, vtable_len })
    }
}

/// A table of a [`Buffer`]; its fields are read by id (their order in the
/// schema), absent fields give `None` or the schema default.
#[derive(Clone, Copy)]
pub struct Table<'b, 'a> {
    buf: &'b Buffer<'a>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'b, 'a> Table<'b, 'a> {
    /// Where field `id` lies, if present.
    fn field(&self, id: usize) -> Result<Option<usize>, Malformed> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        match self.buf.u16_at(self.vtable + slot, "vtable")? {
            0 => Ok(None),
            offset => Ok(Some(self.pos + offset)),
        }
    }

    fn scalar<const N: usize>(&self, id: usize, what: &'static str) -> Result<[u8; N], Malformed> {
        match self.field(id)? {
            Some(at) => {
                self.buf.charge(N)?;
                self.buf.array(at, what)
            }
            None => Ok([0; N]),
        }
    }

    pub fn u8(&self, id: usize) -> Result<u8, Malformed> {
        Ok(self.scalar::<1>(id, "u8 field")?[0])
    }

    pub fn u64(&self, id: usize) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.scalar(id, "u64 field")?))
    }

    pub fn f64(&self, id: usize) -> Result<f64, Malformed> {
        Ok(f64::from_le_bytes(self.scalar(id, "f64 field")?))
    }

    /// A `[ubyte]` or `string` field (a string's NUL is not part of it).
    pub fn bytes(&self, id: usize) -> Result<Option<&'a [u8]>, Malformed> {
        let Some(at) = self.field(id)? else { return Ok(None) };
        let vector = self.buf.follow(at, "vector offset")?;
        let len = self.buf.u32_at(vector, "vector length")?;
        self.buf.charge(8 + len)?;
        self.buf.slice(vector + 4, len, "vector").map(Some)
    }

    /// Like [`Self::bytes`], for a field the schema marks `required`.
    pub fn required_bytes(&self, id: usize, name: &'static str) -> Result<&'a [u8], Malformed> {
        self.bytes(id)?.ok_or(Malformed::MissingRequired(name))
    }

    /// A table field.
    pub fn table(&self, id: usize) -> Result<Option<Table<'b, 'a>>, Malformed> {
        let Some(at) = self.field(id)? else { return Ok(None) };
        self.buf.charge(4)?;
        self.buf.table_at(self.buf.follow(at, "table offset")?).map(Some)
    }

    /// A `[Table]` field: its tables in order, each checked as it is reached.
    pub fn tables(&self, id: usize) -> Result<Option<Tables<'b, 'a>>, Malformed> {
        let Some(at) = self.field(id)? else { return Ok(None) };
        let vector = self.buf.follow(at, "vector offset")?;
        let len = self.buf.u32_at(vector, "vector length")?;
        // Check the offset slots are all there before any is followed.
        self.buf.slice(vector + 4, len.checked_mul(4).ok_or(Malformed::TooMuchWork)?, "vector")?;
        self.buf.charge(8)?;
        Ok(Some(Tables { buf: self.buf, next: vector + 4, left: len }))
    }

    /// Like [`Self::tables`], for a field the schema marks `required`.
    pub fn required_tables(&self, id: usize, name: &'static str) -> Result<Tables<'b, 'a>, Malformed> {
        self.tables(id)?.ok_or(Malformed::MissingRequired(name))
    }
}

/// The tables of a `[Table]` vector.
pub struct Tables<'b, 'a> {
    buf: &'b Buffer<'a>,
    next: usize,
    left: usize,
}

impl<'b, 'a> Iterator for Tables<'b, 'a> {
    type Item = Result<Table<'b, 'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let slot = self.next;
        self.next += 4;
        Some(self.buf.charge(4).and_then(|()| self.buf.table_at(self.buf.follow(slot, "table offset")?)))
    }
}
