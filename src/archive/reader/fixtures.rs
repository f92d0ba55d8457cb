//! Test fixtures: an in-memory archive and sealed blocks put into it.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::archive::block::{self, tests::raw_range};
use crate::archive::Archive;

/// An empty in-memory archive under prefix `t`.
pub(crate) fn archive() -> Archive {
    Archive {
        store: Arc::new(InMemory::new()),
        prefix: "t".into(),
        location: "mem".into(),
    }
}

/// Stores `bytes` under `key`.
pub(crate) async fn put_bytes(archive: &Archive, key: &Path, bytes: bytes::Bytes) {
    archive
        .store
        .put(key, PutPayload::from(bytes))
        .await
        .expect("put");
}

/// Seals `first..=last` and stores it under its key; returns the bytes.
pub(crate) async fn put(archive: &Archive, first: u64, last: u64) -> bytes::Bytes {
    let sealed = block::seal(&raw_range(first, last)).expect("seals");
    let key = block::block_key(&archive.prefix, first, last);
    put_bytes(archive, &key, sealed.bytes.clone()).await;
    sealed.bytes
}
