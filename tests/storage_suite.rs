//! openraft's storage conformance suite against the redb store.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use otelraft::metrics::Metrics;
use otelraft::raft::TypeConfig;
use otelraft::store::{self, LogStore, StateMachineStore};
use tempfile::TempDir;

/// Opens a fresh store in its own temporary directory for every test case;
/// the `TempDir` guard keeps the directory until the case is done.
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let io_err = |e: std::io::Error| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e)
        };
        let dir = TempDir::new().map_err(io_err)?;
        let (log, sm) = store::open(dir.path(), Arc::new(Metrics::new()))
            .await
            .map_err(|e| io_err(e.into()))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RedbBuilder).await
}
