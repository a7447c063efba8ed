//! Accessors for the Tell tables, written the way `flatc` generates them:
//! a struct around [`Table`](flatbuffers::Table), `Follow` to reach it and
//! `Verifiable` to check it. Every accessor reads a field with exactly the
//! type its verifier checked, which is what makes the `unsafe` reads sound.

use flatbuffers::{
    Follow, ForwardsUOffset, InvalidFlatbuffer, Table, VOffsetT, Vector, VectorIter, Verifiable, Verifier,
};

/// A little-endian `u64` at any offset (see the module docs on alignment).
pub struct LeU64;

/// A little-endian `f64` at any offset.
pub struct LeF64;

fn read8(buf: &[u8], loc: usize) -> [u8; 8] {
    // Verified in bounds; the fallback only keeps this free of panics.
    buf.get(loc..).and_then(|b| b.first_chunk::<8>()).copied().unwrap_or_default()
}

impl<'a> Follow<'a> for LeU64 {
    type Inner = u64;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> u64 {
        u64::from_le_bytes(read8(buf, loc))
    }
}

impl<'a> Follow<'a> for LeF64 {
    type Inner = f64;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> f64 {
        f64::from_le_bytes(read8(buf, loc))
    }
}

impl Verifiable for LeU64 {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.range_in_buffer(pos, 8)
    }
}

impl Verifiable for LeF64 {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.range_in_buffer(pos, 8)
    }
}

/// `[ubyte]` and `string` alike: a string is a byte vector plus a NUL.
type Bytes<'a> = ForwardsUOffset<Vector<'a, u8>>;
/// `[T]` for a table type `T`.
type Tables<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;

/// vtable slot of field `id`.
const fn slot(id: VOffsetT) -> VOffsetT {
    4 + 2 * id
}

macro_rules! table {
    ($name:ident) => {
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            tab: Table<'a>,
        }

        impl<'a> Follow<'a> for $name<'a> {
            type Inner = $name<'a>;
            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self {
                // SAFETY: the caller guarantees a verified table at `loc`.
                $name { tab: unsafe { Table::new(buf, loc) } }
            }
        }
    };
}

/// Field readers shared by every table type.
trait Fields<'a> {
    fn tab(&self) -> &Table<'a>;

    fn u8(&self, id: VOffsetT) -> u8 {
        // SAFETY: the table's verifier checked field `id` as a u8.
        unsafe { self.tab().get::<u8>(slot(id), Some(0)) }.unwrap_or(0)
    }

    fn u64(&self, id: VOffsetT) -> u64 {
        // SAFETY: the table's verifier checked field `id` as an LeU64.
        unsafe { self.tab().get::<LeU64>(slot(id), Some(0)) }.unwrap_or(0)
    }

    fn f64(&self, id: VOffsetT) -> f64 {
        // SAFETY: the table's verifier checked field `id` as an LeF64.
        unsafe { self.tab().get::<LeF64>(slot(id), Some(0.0)) }.unwrap_or(0.0)
    }

    fn bytes(&self, id: VOffsetT) -> Option<&'a [u8]> {
        // SAFETY: the table's verifier checked field `id` as a byte vector.
        unsafe { self.tab().get::<Bytes<'a>>(slot(id), None) }.map(|v| v.bytes())
    }

    fn tables<T: Follow<'a> + 'a>(&self, id: VOffsetT) -> Option<VectorIter<'a, ForwardsUOffset<T>>> {
        // SAFETY: the table's verifier checked field `id` as a vector of T.
        unsafe { self.tab().get::<Tables<'a, T>>(slot(id), None) }.map(|v| v.iter())
    }
}

macro_rules! fields {
    ($name:ident) => {
        impl<'a> Fields<'a> for $name<'a> {
            fn tab(&self) -> &Table<'a> {
                &self.tab
            }
        }
    };
}

table!(Batch);
fields!(Batch);
impl<'a> Batch<'a> {
    pub fn api_key(&self) -> Option<&'a [u8]> {
        self.bytes(0)
    }
    pub fn schema_type(&self) -> u8 {
        self.u8(1)
    }
    pub fn version(&self) -> u8 {
        self.u8(2)
    }
    pub fn batch_id(&self) -> u64 {
        self.u64(3)
    }
    pub fn data(&self) -> Option<&'a [u8]> {
        self.bytes(4)
    }
}
impl Verifiable for Batch<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        // source_ip (5) is never read, so it is not verified either.
        v.visit_table(pos)?
            .visit_field::<Bytes>("api_key", slot(0), true)?
            .visit_field::<u8>("schema_type", slot(1), false)?
            .visit_field::<u8>("version", slot(2), false)?
            .visit_field::<LeU64>("batch_id", slot(3), false)?
            .visit_field::<Bytes>("data", slot(4), true)?
            .finish();
        Ok(())
    }
}

table!(EventData);
fields!(EventData);
impl<'a> EventData<'a> {
    pub fn events(&self) -> Option<VectorIter<'a, ForwardsUOffset<Event<'a>>>> {
        self.tables(0)
    }
}
impl Verifiable for EventData<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?.visit_field::<Tables<Event>>("events", slot(0), true)?.finish();
        Ok(())
    }
}

table!(Event);
fields!(Event);
impl<'a> Event<'a> {
    pub fn event_type(&self) -> u8 {
        self.u8(0)
    }
    pub fn timestamp(&self) -> u64 {
        self.u64(1)
    }
    pub fn service(&self) -> Option<&'a [u8]> {
        self.bytes(2)
    }
    pub fn device_id(&self) -> Option<&'a [u8]> {
        self.bytes(3)
    }
    pub fn session_id(&self) -> Option<&'a [u8]> {
        self.bytes(4)
    }
    pub fn event_name(&self) -> Option<&'a [u8]> {
        self.bytes(5)
    }
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.bytes(6)
    }
}
impl Verifiable for Event<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u8>("event_type", slot(0), false)?
            .visit_field::<LeU64>("timestamp", slot(1), false)?
            .visit_field::<Bytes>("service", slot(2), false)?
            .visit_field::<Bytes>("device_id", slot(3), false)?
            .visit_field::<Bytes>("session_id", slot(4), false)?
            .visit_field::<Bytes>("event_name", slot(5), false)?
            .visit_field::<Bytes>("payload", slot(6), false)?
            .finish();
        Ok(())
    }
}

table!(LogData);
fields!(LogData);
impl<'a> LogData<'a> {
    pub fn logs(&self) -> Option<VectorIter<'a, ForwardsUOffset<LogEntry<'a>>>> {
        self.tables(0)
    }
}
impl Verifiable for LogData<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?.visit_field::<Tables<LogEntry>>("logs", slot(0), true)?.finish();
        Ok(())
    }
}

table!(LogEntry);
fields!(LogEntry);
impl<'a> LogEntry<'a> {
    pub fn event_type(&self) -> u8 {
        self.u8(0)
    }
    pub fn session_id(&self) -> Option<&'a [u8]> {
        self.bytes(1)
    }
    pub fn level(&self) -> u8 {
        self.u8(2)
    }
    pub fn timestamp(&self) -> u64 {
        self.u64(3)
    }
    pub fn source(&self) -> Option<&'a [u8]> {
        self.bytes(4)
    }
    pub fn service(&self) -> Option<&'a [u8]> {
        self.bytes(5)
    }
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.bytes(6)
    }
}
impl Verifiable for LogEntry<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u8>("event_type", slot(0), false)?
            .visit_field::<Bytes>("session_id", slot(1), false)?
            .visit_field::<u8>("level", slot(2), false)?
            .visit_field::<LeU64>("timestamp", slot(3), false)?
            .visit_field::<Bytes>("source", slot(4), false)?
            .visit_field::<Bytes>("service", slot(5), false)?
            .visit_field::<Bytes>("payload", slot(6), false)?
            .finish();
        Ok(())
    }
}

table!(MetricData);
fields!(MetricData);
impl<'a> MetricData<'a> {
    pub fn metrics(&self) -> Option<VectorIter<'a, ForwardsUOffset<MetricEntry<'a>>>> {
        self.tables(0)
    }
}
impl Verifiable for MetricData<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?.visit_field::<Tables<MetricEntry>>("metrics", slot(0), true)?.finish();
        Ok(())
    }
}

table!(MetricEntry);
fields!(MetricEntry);
impl<'a> MetricEntry<'a> {
    pub fn metric_type(&self) -> u8 {
        self.u8(0)
    }
    pub fn timestamp(&self) -> u64 {
        self.u64(1)
    }
    pub fn name(&self) -> Option<&'a [u8]> {
        self.bytes(2)
    }
    pub fn value(&self) -> f64 {
        self.f64(3)
    }
    pub fn source(&self) -> Option<&'a [u8]> {
        self.bytes(4)
    }
    pub fn service(&self) -> Option<&'a [u8]> {
        self.bytes(5)
    }
    pub fn labels(&self) -> Option<VectorIter<'a, ForwardsUOffset<Label<'a>>>> {
        self.tables(6)
    }
    pub fn temporality(&self) -> u8 {
        self.u8(7)
    }
    pub fn histogram(&self) -> Option<Histogram<'a>> {
        // SAFETY: the verifier checked field 8 as a Histogram table.
        unsafe { self.tab.get::<ForwardsUOffset<Histogram<'a>>>(slot(8), None) }
    }
    pub fn session_id(&self) -> Option<&'a [u8]> {
        self.bytes(9)
    }
}
impl Verifiable for MetricEntry<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        // int_labels (10) is never read, so it is not verified either.
        v.visit_table(pos)?
            .visit_field::<u8>("metric_type", slot(0), false)?
            .visit_field::<LeU64>("timestamp", slot(1), false)?
            .visit_field::<Bytes>("name", slot(2), true)?
            .visit_field::<LeF64>("value", slot(3), false)?
            .visit_field::<Bytes>("source", slot(4), false)?
            .visit_field::<Bytes>("service", slot(5), false)?
            .visit_field::<Tables<Label>>("labels", slot(6), false)?
            .visit_field::<u8>("temporality", slot(7), false)?
            .visit_field::<ForwardsUOffset<Histogram>>("histogram", slot(8), false)?
            .visit_field::<Bytes>("session_id", slot(9), false)?
            .finish();
        Ok(())
    }
}

table!(Label);
fields!(Label);
impl<'a> Label<'a> {
    pub fn key(&self) -> Option<&'a [u8]> {
        self.bytes(0)
    }
    pub fn value(&self) -> Option<&'a [u8]> {
        self.bytes(1)
    }
}
impl Verifiable for Label<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Bytes>("key", slot(0), true)?
            .visit_field::<Bytes>("value", slot(1), true)?
            .finish();
        Ok(())
    }
}

table!(Histogram);
fields!(Histogram);
impl<'a> Histogram<'a> {
    pub fn count(&self) -> u64 {
        self.u64(0)
    }
    pub fn sum(&self) -> f64 {
        self.f64(1)
    }
    pub fn buckets(&self) -> Option<VectorIter<'a, ForwardsUOffset<Bucket<'a>>>> {
        self.tables(2)
    }
    pub fn min(&self) -> f64 {
        self.f64(3)
    }
    pub fn max(&self) -> f64 {
        self.f64(4)
    }
}
impl Verifiable for Histogram<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        // tell-encoding writes this vtable straight after the last label
        // string, at any offset: see `LooseTable`.
        let table = LooseTable::visit(v, pos)?;
        table.visit_field::<LeU64>(v, slot(0))?;
        table.visit_field::<LeF64>(v, slot(1))?;
        table.visit_field::<Tables<Bucket>>(v, slot(2))?;
        table.visit_field::<LeF64>(v, slot(3))?;
        table.visit_field::<LeF64>(v, slot(4))
    }
}

/// A table checked like `Verifier::visit_table` does, except that its
/// vtable may sit at an odd offset (the stock verifier insists on 2-byte
/// alignment). Reads go through `Verifier::get_u8`, which checks bounds
/// and counts towards the apparent size; the table itself must still be
/// 4-aligned. Field lookup mirrors `VTable::get`, which the accessors use.
struct LooseTable {
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl LooseTable {
    fn visit(v: &mut Verifier, pos: usize) -> Result<LooseTable, InvalidFlatbuffer> {
        let soffset = v.get_uoffset(pos)? as i32;
        // Signed offsets point backwards when positive (FlatBuffers' rule).
        let vtable = if soffset > 0 {
            pos.checked_sub(soffset.unsigned_abs() as usize)
        } else {
            pos.checked_add(soffset.unsigned_abs() as usize)
        };
        let vtable = vtable.ok_or(InvalidFlatbuffer::SignedOffsetOutOfBounds {
            soffset,
            position: pos,
            error_trace: Default::default(),
        })?;
        let vtable_len = usize::from(read_u16(v, vtable)?);
        v.range_in_buffer(vtable, vtable_len)?;
        Ok(LooseTable { pos, vtable, vtable_len })
    }

    fn visit_field<T: Verifiable>(&self, v: &mut Verifier, slot: VOffsetT) -> Result<(), InvalidFlatbuffer> {
        let slot = usize::from(slot);
        if slot + 2 > self.vtable_len {
            return Ok(());
        }
        match read_u16(v, self.vtable + slot)? {
            0 => Ok(()),
            offset => T::run_verifier(v, self.pos.saturating_add(usize::from(offset))),
        }
    }
}

/// A little-endian u16 at any offset, bounds-checked.
fn read_u16(v: &mut Verifier, pos: usize) -> Result<u16, InvalidFlatbuffer> {
    Ok(u16::from_le_bytes([v.get_u8(pos)?, v.get_u8(pos.saturating_add(1))?]))
}

table!(Bucket);
fields!(Bucket);
impl Bucket<'_> {
    pub fn upper_bound(&self) -> f64 {
        self.f64(0)
    }
    pub fn count(&self) -> u64 {
        self.u64(1)
    }
}
impl Verifiable for Bucket<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<LeF64>("upper_bound", slot(0), false)?
            .visit_field::<LeU64>("count", slot(1), false)?
            .finish();
        Ok(())
    }
}
