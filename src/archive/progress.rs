//! What this node's archiver is doing, for `admin status` and
//! `/health/ready`. The replicated part (cursor, pending seal, totals) lives
//! in the state machine; this is the local part.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// What this node's archiver is doing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArchivePhase {
    /// `[archive]` is off.
    Disabled,
    /// Not leading, or not started yet: nothing to do here.
    #[default]
    Idle,
    /// Proposing the range of the next block.
    Sealing,
    /// Putting a sealed block into the store.
    Uploading,
    /// Every committed entry that is due is archived.
    CaughtUp,
    /// Waiting to try a failed request again.
    Retrying,
}

impl ArchivePhase {
    /// The name `admin status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchivePhase::Disabled => "disabled",
            ArchivePhase::Idle => "idle",
            ArchivePhase::Sealing => "sealing",
            ArchivePhase::Uploading => "uploading",
            ArchivePhase::CaughtUp => "caught_up",
            ArchivePhase::Retrying => "retrying",
        }
    }
}

/// The live view of the archive on this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchiveProgress {
    /// What the archiver is doing.
    pub phase: ArchivePhase,
    /// Where blocks go: `s3://bucket/prefix` or `file:///dir/prefix`.
    pub location: String,
    /// The last error, until the next success.
    pub last_error: Option<String>,
    /// Set while the store refuses us for a reason retrying cannot fix
    /// (bad credentials, missing bucket): the node is then not ready.
    pub misconfigured: Option<String>,
}

/// Shared handle to the progress.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Arc<Mutex<ArchiveProgress>>,
}

impl Progress {
    /// Changes the progress.
    pub fn update(&self, f: impl FnOnce(&mut ArchiveProgress)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy.
    pub fn snapshot(&self) -> ArchiveProgress {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
