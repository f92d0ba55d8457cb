//! Archive: committed log entries sealed into blocks and stored in an object
//! store (an S3-compatible bucket, or a local directory by default), so the
//! local log can be trimmed and a lost cluster rebuilt.
//!
//! # Layout
//!
//! - [`store`]: opens the object store the section describes.
//! - [`block`]: the block format (`docs/archive-format.md`) and object keys.
//! - [`bounds`]: where the archive begins and ends, recorded in the bucket.
//! - [`archiver`]: the leader's seal, upload and record loop; retention.
//! - [`probe`]: every member lists the store now and then and reports misconfiguration.
//! - [`progress`]: what this node's archiver is doing, for status and health.
//! - [`reader`]: listing, fetching and verifying blocks (restore, replay and the CLI read through it).
//!
//! # Invariants
//!
//! - A block holds every committed entry of one contiguous index range,
//!   exactly as stored in the log, so the archive alone can rebuild state.
//! - Its key is derived from that range; it is written once, with
//!   `PutMode::Create`, and never overwritten.

pub mod archiver;
pub mod block;
pub mod bounds;
pub mod probe;
pub mod progress;
pub mod reader;
pub mod store;

pub use self::store::Archive;

/// The one error type of the archive module.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The object store could not be set up from the configuration.
    #[error("cannot open archive {location}: {message}")]
    Open {
        /// Bucket or directory.
        location: String,
        /// Why.
        message: String,
    },
    /// An object-store request failed.
    #[error("archive request for {key} failed: {source}")]
    Store {
        /// The object key (or prefix, for listings).
        key: String,
        /// object_store's error.
        source: object_store::Error,
    },
    /// A block's bytes are not a valid block.
    #[error("block {key} is invalid: {source}")]
    Block {
        /// The object key.
        key: String,
        /// What is wrong with it.
        source: block::BlockError,
    },
    /// An object already exists under a block's key with different content.
    #[error("block {key} already exists with checksum {found}, expected {expected}")]
    Conflict {
        /// The object key.
        key: String,
        /// Checksum of the block built from the log.
        expected: String,
        /// Checksum of the stored object.
        found: String,
    },
    /// Reading the local log failed.
    #[error("reading the log for the archive failed: {0}")]
    Log(#[from] crate::store::StoreError),
    /// The archive does not hold what was asked for.
    #[error("{0}")]
    Missing(String),
    /// Writing a tool's output failed (for example a closed pipe).
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
    /// This node stopped leading; the next leader carries on.
    #[error("not leading: {0}")]
    NotLeader(String),
}

impl ArchiveError {
    /// Whether the same operation may succeed later: network and server
    /// errors yes; invalid blocks, conflicts and configuration no.
    pub fn retryable(&self) -> bool {
        match self {
            ArchiveError::Store { source, .. } => !matches!(
                source,
                object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            ArchiveError::Log(e) => e.retryable(),
            ArchiveError::NotLeader(_) => true,
            ArchiveError::Open { .. }
            | ArchiveError::Block { .. }
            | ArchiveError::Conflict { .. }
            | ArchiveError::Output(_)
            | ArchiveError::Missing(_) => false,
        }
    }

    pub(crate) fn store(
        key: impl Into<String>,
    ) -> impl FnOnce(object_store::Error) -> ArchiveError {
        let key = key.into();
        move |source| ArchiveError::Store { key, source }
    }
}
