//! The block format: a contiguous run of committed log entries in one
//! object, and the object keys blocks are stored under. The byte layout is
//! specified in `docs/archive-format.md`; this file is its only writer and
//! reader.
//!
//! Invariants:
//!
//! - A block holds the entries `first_index..=last_index`, each exactly as
//!   the log stores it (the `LogEntry` bytes `raft::codec::encode`
//!   produced), in index order, without holes. Replaying the blocks in key
//!   order reproduces the log.
//! - Sealing is a pure function of the entries: no clock, no randomness,
//!   single-threaded zstd at a fixed level. The same entries give the same
//!   bytes (for one zstd version), so any leader that seals a range produces
//!   the object, and the checksum, that the cluster recorded.
//! - [`open`] accepts only what [`seal`] produces: every header field is
//!   checked against the body, and the SHA-256 trailer against everything
//!   before it. A damaged object is an error, never a panic and never a
//!   silently shorter block.

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::pb::log::{command::Kind, log_entry::Payload, LogEntry, Signal};

mod key;

pub use key::{block_key, blocks_prefix, parse_block_key};

/// First bytes of every block object, so a stray object is recognised as
/// not a block before anything else is read.
pub const BLOCK_MAGIC: &[u8; 8] = b"OTRBLK01";

/// The format version this code writes, and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;

/// `compression` header value for a zstd body, the only one defined.
pub const COMPRESSION_ZSTD: u8 = 1;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 96;

/// Length of the trailer: one SHA-256 digest.
pub const TRAILER_LEN: usize = 32;

/// Largest uncompressed body a block may have (1 GiB). Blocks are sealed at
/// `archive.block_max_bytes` (8 MiB by default), so this only bounds the
/// memory a damaged or hostile object can make a reader allocate.
pub const MAX_UNCOMPRESSED_LEN: u64 = 1 << 30;

/// zstd level of the body. Part of the format in practice: changing it
/// changes the bytes, and so the checksum, of a re-sealed range.
const ZSTD_LEVEL: i32 = 3;

/// Why entries cannot be sealed, or bytes are not a valid block. Never
/// retryable: the same input fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// [`seal`] was given no entries.
    #[error("a block needs at least one entry")]
    Empty,
    /// The entries given to [`seal`] skip or repeat an index.
    #[error("entries are not contiguous: expected index {expected}, found {found}")]
    NotContiguous {
        /// The index that should come next.
        expected: u64,
        /// The index given.
        found: u64,
    },
    /// The object does not start with [`BLOCK_MAGIC`].
    #[error("not a block: the magic bytes are not OTRBLK01")]
    BadMagic,
    /// The object is a block of a format version this code cannot read.
    #[error("unsupported block format version {0}")]
    UnsupportedVersion(u16),
    /// A header field has a value version 1 does not define (flags,
    /// compression, reserved bytes).
    #[error("unsupported block header: {0}")]
    UnsupportedHeader(String),
    /// The object is shorter than its header says.
    #[error("block is truncated: {len} bytes, the header requires {expected}")]
    Truncated {
        /// Length the header implies.
        expected: u64,
        /// Actual length.
        len: u64,
    },
    /// The object is longer than its header says.
    #[error("block has trailing bytes: {len} bytes, the header requires {expected}")]
    TrailingBytes {
        /// Length the header implies.
        expected: u64,
        /// Actual length.
        len: u64,
    },
    /// The trailer is not the SHA-256 of header and body.
    #[error("checksum mismatch: trailer says {expected}, content hashes to {found}")]
    ChecksumMismatch {
        /// The trailer, hex.
        expected: String,
        /// The digest of the content, hex.
        found: String,
    },
    /// The uncompressed body would exceed [`MAX_UNCOMPRESSED_LEN`].
    #[error("block body of {0} bytes exceeds the limit of {MAX_UNCOMPRESSED_LEN} bytes")]
    TooLarge(u64),
    /// zstd refused to compress the body.
    #[error("body does not compress: {0}")]
    Compress(String),
    /// zstd refused to decompress the body, or it is larger than declared.
    #[error("body does not decompress: {0}")]
    Decompress(String),
    /// One entry does not decode, or does not hold the index its position
    /// in the block implies.
    #[error("entry {position} of the block (index {index}) is invalid: {message}")]
    Entry {
        /// 0-based position in the block.
        position: u64,
        /// The index the entry should hold.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// A header field disagrees with the body.
    #[error("header says {header} {what}, the body has {found}")]
    CountMismatch {
        /// Which field.
        what: &'static str,
        /// The header's value.
        header: u64,
        /// The value computed from the body.
        found: u64,
    },
}

impl BlockError {
    /// Always false: block errors come from the bytes, which do not change.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// One log entry as stored: its index and its `LogEntry` protobuf bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry's log index (the key of its `log` row).
    pub index: u64,
    /// The row's value, as `raft::codec::encode` produced it.
    pub bytes: Bytes,
}

/// A block ready to upload, as [`seal`] builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlock {
    /// Index of the first entry.
    pub first_index: u64,
    /// Index of the last entry.
    pub last_index: u64,
    /// The whole object: header, body, trailer.
    pub bytes: Bytes,
    /// SHA-256 of header and body (the trailer), lower-case hex: what the
    /// cluster records in `Archived.checksum`.
    pub checksum: String,
    /// Number of entries, `last_index - first_index + 1`.
    pub entries: u64,
    /// Length of the body before compression: the entries' bytes plus
    /// their varint length prefixes.
    pub uncompressed_bytes: u64,
}

/// The fixed header of a block, every field as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Format version, [`FORMAT_VERSION`].
    pub version: u16,
    /// Reserved, 0 in version 1.
    pub flags: u16,
    /// Body compression, [`COMPRESSION_ZSTD`].
    pub compression: u8,
    /// Index of the first entry.
    pub first_index: u64,
    /// Index of the last entry.
    pub last_index: u64,
    /// Number of entries.
    pub entry_count: u64,
    /// Body length before compression.
    pub uncompressed_len: u64,
    /// Body length as stored.
    pub compressed_len: u64,
    /// Smallest non-zero `proposed_unix_nanos` of the block's Ingest
    /// entries; 0 if there is none.
    pub first_proposed_unix_nanos: u64,
    /// Largest `proposed_unix_nanos` of the block's Ingest entries; 0 if
    /// there is none.
    pub last_proposed_unix_nanos: u64,
    /// Sum of `IngestRequest.records` over Ingest entries of signal logs.
    pub logs_records: u64,
    /// The same for metrics.
    pub metrics_records: u64,
    /// The same for traces.
    pub traces_records: u64,
}

/// A verified and decoded block, as [`open`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedBlock {
    /// The header, consistent with the entries.
    pub header: BlockHeader,
    /// The trailer, lower-case hex.
    pub checksum: String,
    /// The entries `header.first_index..=header.last_index`, in order.
    pub entries: Vec<LogEntry>,
}

/// The header fields that are computed from the entries, so [`seal`] and
/// [`open`] derive them the same way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stats {
    first_proposed: u64,
    last_proposed: u64,
    logs: u64,
    metrics: u64,
    traces: u64,
}

impl Stats {
    fn add(&mut self, entry: &LogEntry) {
        let Some(Payload::Command(cmd)) = &entry.payload else {
            return;
        };
        let Some(Kind::Ingest(req)) = &cmd.kind else {
            return;
        };
        let t = req.proposed_unix_nanos;
        if t != 0 {
            if self.first_proposed == 0 || t < self.first_proposed {
                self.first_proposed = t;
            }
            self.last_proposed = self.last_proposed.max(t);
        }
        let sum = match Signal::try_from(req.signal) {
            Ok(Signal::Logs) => &mut self.logs,
            Ok(Signal::Metrics) => &mut self.metrics,
            Ok(Signal::Traces) => &mut self.traces,
            Ok(Signal::Unspecified) | Err(_) => return,
        };
        *sum = sum.saturating_add(req.records);
    }
}

impl BlockHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(BLOCK_MAGIC);
        out[8..10].copy_from_slice(&self.version.to_le_bytes());
        out[10..12].copy_from_slice(&self.flags.to_le_bytes());
        out[12] = self.compression;
        // 13..16 reserved, zero.
        let words = [
            self.first_index,
            self.last_index,
            self.entry_count,
            self.uncompressed_len,
            self.compressed_len,
            self.first_proposed_unix_nanos,
            self.last_proposed_unix_nanos,
            self.logs_records,
            self.metrics_records,
            self.traces_records,
        ];
        for (i, w) in words.iter().enumerate() {
            let at = 16 + 8 * i;
            out[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn stats(&self) -> Stats {
        Stats {
            first_proposed: self.first_proposed_unix_nanos,
            last_proposed: self.last_proposed_unix_nanos,
            logs: self.logs_records,
            metrics: self.metrics_records,
            traces: self.traces_records,
        }
    }

    /// Total object length the header implies, if it fits in a u64.
    fn object_len(&self) -> Option<u64> {
        self.compressed_len
            .checked_add((HEADER_LEN + TRAILER_LEN) as u64)
    }
}

/// Reads and checks the fixed header (magic, version, flags, compression,
/// reserved bytes) from the start of `bytes`, which may be just the first
/// [`HEADER_LEN`] bytes of an object (a ranged read). The header is not
/// covered by a checksum until [`open`] or [`checksum_of`] has checked the
/// whole object: use it for listings and retention, never as proof.
pub fn read_header(bytes: &[u8]) -> Result<BlockHeader, BlockError> {
    if bytes.len() < BLOCK_MAGIC.len() || &bytes[..BLOCK_MAGIC.len()] != BLOCK_MAGIC {
        // A short object that is a prefix of the magic is a truncated block;
        // anything else is not a block at all.
        if BLOCK_MAGIC.starts_with(bytes) {
            return Err(BlockError::Truncated {
                expected: (HEADER_LEN + TRAILER_LEN) as u64,
                len: bytes.len() as u64,
            });
        }
        return Err(BlockError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(BlockError::Truncated {
            expected: (HEADER_LEN + TRAILER_LEN) as u64,
            len: bytes.len() as u64,
        });
    }
    let h = &bytes[..HEADER_LEN];
    let u16_at = |at: usize| u16::from_le_bytes([h[at], h[at + 1]]);
    let u64_at = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let version = u16_at(8);
    if version != FORMAT_VERSION {
        return Err(BlockError::UnsupportedVersion(version));
    }
    let flags = u16_at(10);
    if flags != 0 {
        return Err(BlockError::UnsupportedHeader(format!(
            "flags {flags:#06x}, version 1 defines none"
        )));
    }
    let compression = h[12];
    if compression != COMPRESSION_ZSTD {
        return Err(BlockError::UnsupportedHeader(format!(
            "compression {compression}, version 1 defines only 1 (zstd)"
        )));
    }
    if h[13..16] != [0, 0, 0] {
        return Err(BlockError::UnsupportedHeader(
            "reserved header bytes 13..16 are not zero".to_string(),
        ));
    }
    Ok(BlockHeader {
        version,
        flags,
        compression,
        first_index: u64_at(16),
        last_index: u64_at(24),
        entry_count: u64_at(32),
        uncompressed_len: u64_at(40),
        compressed_len: u64_at(48),
        first_proposed_unix_nanos: u64_at(56),
        last_proposed_unix_nanos: u64_at(64),
        logs_records: u64_at(72),
        metrics_records: u64_at(80),
        traces_records: u64_at(88),
    })
}

/// Decodes one entry's bytes and checks that it is an entry the log would
/// accept (`raft::codec::from_pb`) and that it holds `index`.
fn check_entry(position: u64, index: u64, bytes: Bytes) -> Result<LogEntry, BlockError> {
    let invalid = |message: String| BlockError::Entry {
        position,
        index,
        message,
    };
    let pb = LogEntry::decode(bytes).map_err(|e| invalid(e.to_string()))?;
    if pb.index != index {
        return Err(invalid(format!("it holds index {}", pb.index)));
    }
    crate::raft::codec::from_pb(pb.clone()).map_err(|e| invalid(e.to_string()))?;
    Ok(pb)
}

/// Builds the block of `entries`, which must be non-empty, in index order
/// and contiguous. Each entry is decoded to check that it holds its index and
/// to collect the header's statistics; its bytes are stored unchanged.
pub fn seal(entries: &[RawEntry]) -> Result<SealedBlock, BlockError> {
    let first_index = entries.first().ok_or(BlockError::Empty)?.index;
    let mut body_len: u64 = 0;
    for raw in entries {
        let len = raw.bytes.len() as u64;
        body_len = body_len
            .saturating_add(prost::encoding::encoded_len_varint(len) as u64)
            .saturating_add(len);
    }
    if body_len > MAX_UNCOMPRESSED_LEN {
        return Err(BlockError::TooLarge(body_len));
    }

    let mut stats = Stats::default();
    let mut body = Vec::with_capacity(body_len as usize);
    let mut expected = first_index;
    for (position, raw) in entries.iter().enumerate() {
        if raw.index != expected {
            return Err(BlockError::NotContiguous {
                expected,
                found: raw.index,
            });
        }
        let pb = check_entry(position as u64, expected, raw.bytes.clone())?;
        stats.add(&pb);
        prost::encoding::encode_varint(raw.bytes.len() as u64, &mut body);
        body.extend_from_slice(&raw.bytes);
        // The next index must exist: a block ending at u64::MAX is the last
        // one the log can ever have.
        if position + 1 < entries.len() {
            expected = expected.checked_add(1).ok_or(BlockError::NotContiguous {
                expected: u64::MAX,
                found: u64::MAX,
            })?;
        }
    }
    let last_index = expected;
    let entry_count = entries.len() as u64;

    let compressed =
        zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| BlockError::Compress(e.to_string()))?;
    let header = BlockHeader {
        version: FORMAT_VERSION,
        flags: 0,
        compression: COMPRESSION_ZSTD,
        first_index,
        last_index,
        entry_count,
        uncompressed_len: body.len() as u64,
        compressed_len: compressed.len() as u64,
        first_proposed_unix_nanos: stats.first_proposed,
        last_proposed_unix_nanos: stats.last_proposed,
        logs_records: stats.logs,
        metrics_records: stats.metrics,
        traces_records: stats.traces,
    };

    let mut object = Vec::with_capacity(HEADER_LEN + compressed.len() + TRAILER_LEN);
    object.extend_from_slice(&header.encode());
    object.extend_from_slice(&compressed);
    let digest = Sha256::digest(&object);
    object.extend_from_slice(&digest);
    Ok(SealedBlock {
        first_index,
        last_index,
        bytes: Bytes::from(object),
        checksum: hex::encode(digest),
        entries: entry_count,
        uncompressed_bytes: body.len() as u64,
    })
}

/// Checks header, length and trailer; returns the header and the body.
fn verify_envelope(bytes: &[u8]) -> Result<(BlockHeader, &[u8], String), BlockError> {
    let header = read_header(bytes)?;
    let len = bytes.len() as u64;
    let expected = header.object_len().ok_or(BlockError::TooLarge(u64::MAX))?;
    if len < expected {
        return Err(BlockError::Truncated { expected, len });
    }
    if len > expected {
        return Err(BlockError::TrailingBytes { expected, len });
    }
    // len == expected, so both offsets are inside `bytes`.
    let content_len = bytes.len() - TRAILER_LEN;
    let (content, trailer) = bytes.split_at(content_len);
    let found = Sha256::digest(content);
    if found.as_slice() != trailer {
        return Err(BlockError::ChecksumMismatch {
            expected: hex::encode(trailer),
            found: hex::encode(found),
        });
    }
    Ok((header, &content[HEADER_LEN..], hex::encode(trailer)))
}

/// Verifies the object's framing and SHA-256 trailer and returns the
/// checksum (lower-case hex), without decompressing or decoding the body:
/// enough to confirm that an uploaded object is the block the cluster
/// recorded.
pub fn checksum_of(bytes: &[u8]) -> Result<String, BlockError> {
    verify_envelope(bytes).map(|(_, _, checksum)| checksum)
}

/// Verifies and decodes a block: magic, version, lengths, checksum, then the
/// body (decompressed up to its declared length, at most
/// [`MAX_UNCOMPRESSED_LEN`]), every entry, and every header field against
/// the entries.
pub fn open(bytes: &[u8]) -> Result<OpenedBlock, BlockError> {
    let (header, body, checksum) = verify_envelope(bytes)?;
    let mismatch = |what: &'static str, header: u64, found: u64| BlockError::CountMismatch {
        what,
        header,
        found,
    };
    if header.last_index < header.first_index {
        return Err(mismatch(
            "last index (before the first)",
            header.last_index,
            header.first_index,
        ));
    }
    let span = (header.last_index - header.first_index).saturating_add(1);
    if header.entry_count != span {
        return Err(mismatch("entries", header.entry_count, span));
    }
    if header.uncompressed_len > MAX_UNCOMPRESSED_LEN {
        return Err(BlockError::TooLarge(header.uncompressed_len));
    }

    // The capacity is the declared length: a body that inflates beyond it
    // is refused by zstd instead of growing the buffer.
    let plain = zstd::bulk::decompress(body, header.uncompressed_len as usize)
        .map_err(|e| BlockError::Decompress(e.to_string()))?;
    if plain.len() as u64 != header.uncompressed_len {
        return Err(mismatch(
            "uncompressed bytes",
            header.uncompressed_len,
            plain.len() as u64,
        ));
    }

    let mut rest = Bytes::from(plain);
    let mut entries = Vec::new();
    let mut stats = Stats::default();
    let mut position: u64 = 0;
    while !rest.is_empty() {
        let index = header.first_index.saturating_add(position);
        if position >= header.entry_count {
            return Err(mismatch("entries", header.entry_count, position + 1));
        }
        let framing = |message: String| BlockError::Entry {
            position,
            index,
            message,
        };
        let len = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| framing(format!("length prefix: {e}")))?;
        if len > rest.len() as u64 {
            return Err(framing(format!(
                "length prefix {len} exceeds the {} bytes left in the body",
                rest.len()
            )));
        }
        let entry = check_entry(position, index, rest.split_to(len as usize))?;
        stats.add(&entry);
        entries.push(entry);
        position += 1;
    }
    if position != header.entry_count {
        return Err(mismatch("entries", header.entry_count, position));
    }
    let want = header.stats();
    let checks = [
        (
            "first proposed ns",
            want.first_proposed,
            stats.first_proposed,
        ),
        ("last proposed ns", want.last_proposed, stats.last_proposed),
        ("logs records", want.logs, stats.logs),
        ("metrics records", want.metrics, stats.metrics),
        ("traces records", want.traces, stats.traces),
    ];
    for (what, header_value, found) in checks {
        if header_value != found {
            return Err(mismatch(what, header_value, found));
        }
    }
    Ok(OpenedBlock {
        header,
        checksum,
        entries,
    })
}

#[cfg(test)]
pub(crate) mod tests;
