//! `otelraft inspect`: prints a stopped node's log as JSON lines, one entry
//! per line, with OTLP payloads rendered as OTLP JSON. Read-only.
//!
//! The lines are the ones `otelraft archive cat` prints for the same
//! entries (see `cli::archive::entry_line`).

use std::io::Write;
use std::path::Path;

use crate::cli::archive::entry_line;
use crate::raft::codec;
use crate::store::{self, StoreError};

/// Writes every entry of the node at `data_dir` to `out`.
pub fn dump(data_dir: &Path, out: &mut impl Write) -> Result<usize, StoreError> {
    let entries = store::dump_offline(data_dir)?;
    for e in &entries {
        let pb = codec::to_pb(e).map_err(|source| StoreError::Unencodable {
            index: e.log_id.index,
            source,
        })?;
        writeln!(out, "{}", entry_line(&pb)).map_err(StoreError::from)?;
    }
    Ok(entries.len())
}
