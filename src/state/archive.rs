//! The archive's replicated position: the sealed range and the recorded
//! blocks.

use serde::{Deserialize, Serialize};

use crate::pb::log::{ArchiveSeal, Archived};

/// The archive's replicated position. Changed only by applying
/// `ArchiveSeal` and `Archived` commands.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchiveState {
    /// Every log index `<= cursor` is in a block recorded as archived.
    pub cursor: u64,
    /// The range sealed for the next block, committed but not yet recorded
    /// as archived: whichever leader uploads it uses exactly this range.
    pub pending: Option<PendingSeal>,
    /// Blocks recorded.
    pub blocks: u64,
    /// Bytes of block objects recorded.
    pub bytes: u64,
    /// Entries' bytes before compression, in recorded blocks.
    pub uncompressed_bytes: u64,
    /// The newest recorded block.
    pub last_block: Option<ArchivedBlock>,
    /// Entries a seal passed over because the leader's log no longer held
    /// them (trimmed while the archive was off): never archived. Those
    /// before the first block are where the archive begins; later ones are
    /// gaps that `archive verify` reports.
    #[serde(default)]
    pub skipped_entries: u64,
}

impl ArchiveState {
    /// The first index not yet archived: the archive covers the log from
    /// index 0 (Raft's first entry), so before the first block it is 0.
    pub fn next_index(&self) -> u64 {
        if self.blocks == 0 {
            0
        } else {
            self.cursor.saturating_add(1)
        }
    }

    /// Applies a seal decision. Compare and set: only the block right after
    /// the cursor (or, for a seal made `after_trim`, one past it), only one
    /// pending at a time, so a deposed leader's late seal is a no-op and the
    /// next block's range is settled once.
    pub fn apply_seal(&mut self, seal: &ArchiveSeal) {
        let next = self.next_index();
        let follows = seal.first_index == next || (seal.after_trim && seal.first_index > next);
        if self.pending.is_none() && follows && seal.last_index >= seal.first_index {
            self.skipped_entries = self.skipped_entries.saturating_add(seal.first_index - next);
            self.pending = Some(PendingSeal {
                first_index: seal.first_index,
                last_index: seal.last_index,
            });
        }
    }

    /// Records an uploaded block, only if it is exactly the pending seal.
    pub fn apply_archived(&mut self, a: &Archived) {
        let matches = self
            .pending
            .is_some_and(|p| p.first_index == a.first_index && p.last_index == a.last_index);
        if !matches {
            return;
        }
        self.pending = None;
        self.cursor = a.last_index;
        self.blocks = self.blocks.saturating_add(1);
        self.bytes = self.bytes.saturating_add(a.size);
        self.uncompressed_bytes = self.uncompressed_bytes.saturating_add(a.uncompressed_bytes);
        self.last_block = Some(ArchivedBlock {
            first_index: a.first_index,
            last_index: a.last_index,
            key: a.key.clone(),
            checksum: a.checksum.clone(),
            size: a.size,
        });
    }
}

/// A committed seal decision.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingSeal {
    /// First index of the block.
    pub first_index: u64,
    /// Last index of the block, inclusive.
    pub last_index: u64,
}

/// One `Archived` command as applied: the log range `first_index..=last_index`
/// is stored in the archive under `key`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchivedBlock {
    /// First log index in the block.
    pub first_index: u64,
    /// Last log index in the block, inclusive.
    pub last_index: u64,
    /// Archive object key.
    pub key: String,
    /// The block's checksum, lower-case hex.
    pub checksum: String,
    /// Size of the block object.
    #[serde(default)]
    pub size: u64,
}
