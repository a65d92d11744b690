//! The one fact the gateway reads from an Arrow IPC message's metadata (a FlatBuffers
//! `Message`): how many rows a record batch carries, and how long its body is. Read with
//! bounds checks at every step and nothing else decoded: a malformed message is an error,
//! never a guess.

/// What a message is, as far as counting rows goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpcMessage {
    /// The rows of a record batch; 0 for a schema or a dictionary batch.
    pub rows: u64,
    /// The bytes of body that follow the metadata (in a stream; Flight sends it apart).
    pub body_len: u64,
}

/// `MessageHeader::RecordBatch` in Arrow's `Message.fbs`.
const RECORD_BATCH: u8 = 3;

/// Reads a FlatBuffers `Message`.
pub(crate) fn read(buf: &[u8]) -> Result<IpcMessage, &'static str> {
    let message = Table::root(buf)?;
    let header_type = message.u8(1)?.unwrap_or(0);
    let body_len = message.i64(3)?.unwrap_or(0);
    let body_len = u64::try_from(body_len).map_err(|_| "negative body length")?;
    if header_type != RECORD_BATCH {
        return Ok(IpcMessage { rows: 0, body_len });
    }
    let batch = message.table(2)?.ok_or("a record batch message without its header")?;
    let rows = u64::try_from(batch.i64(0)?.unwrap_or(0)).map_err(|_| "negative row count")?;
    Ok(IpcMessage { rows, body_len })
}

/// A FlatBuffers table: its position and its vtable's.
struct Table<'a> {
    buf: &'a [u8],
    at: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn root(buf: &'a [u8]) -> Result<Self, &'static str> {
        let at = u32_at(buf, 0)? as usize;
        Self::at(buf, at)
    }

    fn at(buf: &'a [u8], at: usize) -> Result<Self, &'static str> {
        let back = i64::from(i32::from_le_bytes(bytes_at(buf, at)?));
        let vtable = usize::try_from(at as i64 - back).map_err(|_| "vtable out of bounds")?;
        let vtable_len = usize::from(u16::from_le_bytes(bytes_at(buf, vtable)?));
        if vtable_len < 4 || vtable.checked_add(vtable_len).is_none_or(|end| end > buf.len()) {
            return Err("vtable out of bounds");
        }
        Ok(Self { buf, at, vtable, vtable_len })
    }

    /// Where field `index` is, if present.
    fn field(&self, index: usize) -> Result<Option<usize>, &'static str> {
        let slot = 4 + 2 * index;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let offset = u16::from_le_bytes(bytes_at(self.buf, self.vtable + slot)?);
        Ok((offset != 0).then(|| self.at + usize::from(offset)))
    }

    fn u8(&self, index: usize) -> Result<Option<u8>, &'static str> {
        self.field(index)?.map(|at| bytes_at::<1>(self.buf, at).map(|b| b[0])).transpose()
    }

    fn i64(&self, index: usize) -> Result<Option<i64>, &'static str> {
        self.field(index)?.map(|at| bytes_at(self.buf, at).map(i64::from_le_bytes)).transpose()
    }

    fn table(&self, index: usize) -> Result<Option<Table<'a>>, &'static str> {
        let Some(at) = self.field(index)? else { return Ok(None) };
        let target = at.checked_add(u32_at(self.buf, at)? as usize).ok_or("offset out of bounds")?;
        Table::at(self.buf, target).map(Some)
    }
}

fn u32_at(buf: &[u8], at: usize) -> Result<u32, &'static str> {
    bytes_at(buf, at).map(u32::from_le_bytes)
}

fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], &'static str> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or("message metadata out of bounds")
}
