//! The form a snapshot takes on the wire: the state-machine JSON plus the
//! committed entries that state still needs.
//!
//! A snapshot's state may hold sink and archive cursors below its last
//! index; the entries between them and that index have not been consumed
//! yet. A member that installs the snapshot must be able to export and
//! archive them should it lead later, so the sender carries every row it
//! still retains at or below the snapshot's last index, and the receiver
//! stores them as retained rows (see `tables::LOG`).
//!
//! Layout: `OTRSNAP2`, the JSON length (u64 LE), the JSON, then per entry its
//! index (u64 LE), its length (u32 LE) and its `LogEntry` bytes. Data that
//! does not start with the magic is plain JSON with nothing carried (the
//! form stored locally).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::tables;
use super::StoreError;

/// Marks snapshot data that carries entries.
const MAGIC: &[u8; 8] = b"OTRSNAP2";

/// Snapshot JSON and carried rows, as `(index, LogEntry bytes)`. `rows` is
/// `None` for data without the magic (a locally stored snapshot): such a
/// snapshot says nothing about the rows, which must then stay as they are.
pub(super) struct Carried {
    pub json: Bytes,
    pub rows: Option<Vec<(u64, Bytes)>>,
}

/// Joins the state JSON and the retained rows into wire form.
pub fn wrap(json: &[u8], rows: &[(u64, Bytes)]) -> Bytes {
    let size = 16 + json.len() + rows.iter().map(|(_, b)| 12 + b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(MAGIC);
    out.put_u64_le(json.len() as u64);
    out.put_slice(json);
    for (index, bytes) in rows {
        out.put_u64_le(*index);
        out.put_u32_le(bytes.len() as u32);
        out.put_slice(bytes);
    }
    out.freeze()
}

/// Splits wire-form data; checks that the rows decode, sit at their index,
/// are contiguous and end at `last_index`.
pub(super) fn unwrap(data: Bytes, last_index: Option<u64>) -> Result<Carried, StoreError> {
    if !data.starts_with(MAGIC) {
        return Ok(Carried {
            json: data,
            rows: None,
        });
    }
    let malformed = || StoreError::Malformed {
        what: "snapshot carried entries",
    };
    let mut buf = data.slice(MAGIC.len()..);
    if buf.remaining() < 8 {
        return Err(malformed());
    }
    let json_len = usize::try_from(buf.get_u64_le()).map_err(|_| malformed())?;
    if buf.remaining() < json_len {
        return Err(malformed());
    }
    let json = buf.split_to(json_len);
    let mut rows: Vec<(u64, Bytes)> = Vec::new();
    while buf.has_remaining() {
        if buf.remaining() < 12 {
            return Err(malformed());
        }
        let index = buf.get_u64_le();
        let len = buf.get_u32_le() as usize;
        if buf.remaining() < len {
            return Err(malformed());
        }
        let bytes = buf.split_to(len);
        tables::decode_entry(index, &bytes)?;
        if let Some((prev, _)) = rows.last() {
            if index != prev.saturating_add(1) {
                return Err(StoreError::Hole {
                    expected: prev.saturating_add(1),
                    found: index,
                });
            }
        }
        rows.push((index, bytes));
    }
    if let Some((last, _)) = rows.last() {
        if Some(*last) != last_index {
            return Err(StoreError::InconsistentSnapshot(format!(
                "carried entries end at {last}, the snapshot at {last_index:?}"
            )));
        }
    }
    Ok(Carried {
        json,
        rows: Some(rows),
    })
}
