//! What this node's archiver is doing, for `admin status` and
//! `/health/ready`. The replicated part (cursor, pending seal, totals) lives
//! in the state machine; this is the local part.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The live view of the archive on this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ArchiveProgress {
    /// `disabled`, `idle` (not leader), `sealing`, `uploading`,
    /// `caught_up` or `retrying`.
    pub phase: String,
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
