//! Where the archive begins and ends, recorded in the bucket beside the
//! blocks, so that `archive verify` can tell a range that was never meant
//! to be there (before the cluster began, or expired by retention) from a
//! range that was lost.
//!
//! Three small JSON objects under `{prefix}/bounds/`:
//!
//! - `origin.json`, `{"first_index": N}`: the first index the cluster ever
//!   archived. Created once, with `PutMode::Create`, before the cluster's
//!   first block is uploaded; a restored cluster continues its archive and
//!   keeps it.
//! - `expired.json`, `{"before_index": N}`: every block below `N` was
//!   deleted by retention on purpose. Raised before the deletes it covers.
//! - `head.json`, `{"archived_through": N}`: the cluster recorded blocks
//!   through index `N`. Raised after each block's record commits.
//!
//! Ordering: each record is written before the state it vouches for can be
//! observed (the origin before the first block, the expiry before the
//! deletes), or after the fact it reports is durable (the head after the
//! commit), so a crash between the two leaves a record that is at worst
//! behind, never ahead of the blocks. Raising is read-then-overwrite: only
//! the leader writes, and a deposed leader racing its successor can at
//! worst lower a record to a value that was true a moment before.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Archive, ArchiveError};

/// What the bucket says about the archive's extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The first index the cluster archived; `None` for an archive made
    /// before origins were recorded (it began at index 0).
    pub origin: Option<u64>,
    /// Blocks below this index were deleted by retention.
    pub expired_before: Option<u64>,
    /// The cluster recorded blocks through this index.
    pub archived_through: Option<u64>,
}

impl Bounds {
    /// The first index a block must cover: what neither the origin nor
    /// retention accounts for is lost.
    pub fn expected_first(&self) -> u64 {
        self.origin
            .unwrap_or(0)
            .max(self.expired_before.unwrap_or(0))
    }
}

#[derive(Serialize, Deserialize)]
struct Origin {
    first_index: u64,
}

#[derive(Serialize, Deserialize)]
struct Expired {
    before_index: u64,
}

#[derive(Serialize, Deserialize)]
struct Head {
    archived_through: u64,
}

fn key(prefix: &str, name: &str) -> Path {
    Path::from(format!("{prefix}/bounds/{name}"))
}

/// Reads one record; `None` when it is absent.
async fn read<T: for<'de> Deserialize<'de>>(
    archive: &Archive,
    name: &str,
) -> Result<Option<T>, ArchiveError> {
    let key = key(&archive.prefix, name);
    let got = match archive.store.get(&key).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = match got {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(ArchiveError::store(key.to_string())(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ArchiveError::Missing(format!("{key} is not a valid bounds record: {e}")))
}

async fn write<T: Serialize>(
    archive: &Archive,
    name: &str,
    value: &T,
    mode: PutMode,
) -> Result<(), object_store::Error> {
    let key = key(&archive.prefix, name);
    // A plain struct of integers: serialising it cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let options = PutOptions {
        mode,
        ..Default::default()
    };
    archive
        .store
        .put_opts(&key, PutPayload::from(bytes), options)
        .await
        .map(|_| ())
}

/// Reads every record.
pub async fn read_bounds(archive: &Archive) -> Result<Bounds, ArchiveError> {
    Ok(Bounds {
        origin: read::<Origin>(archive, "origin.json")
            .await?
            .map(|o| o.first_index),
        expired_before: read::<Expired>(archive, "expired.json")
            .await?
            .map(|e| e.before_index),
        archived_through: read::<Head>(archive, "head.json")
            .await?
            .map(|h| h.archived_through),
    })
}

/// Records that the cluster's archive begins at `first_index`, unless an
/// origin is recorded already; returns the recorded origin.
pub async fn ensure_origin(archive: &Archive, first_index: u64) -> Result<u64, ArchiveError> {
    match write(
        archive,
        "origin.json",
        &Origin { first_index },
        PutMode::Create,
    )
    .await
    {
        Ok(()) => Ok(first_index),
        Err(object_store::Error::AlreadyExists { .. }) => read::<Origin>(archive, "origin.json")
            .await?
            .map(|o| o.first_index)
            .ok_or_else(|| {
                ArchiveError::Missing(format!(
                    "{} exists but could not be read back",
                    key(&archive.prefix, "origin.json")
                ))
            }),
        Err(e) => Err(ArchiveError::store(
            key(&archive.prefix, "origin.json").to_string(),
        )(e)),
    }
}

/// Raises the retention record to `before_index` (never lowers it).
pub async fn raise_expired(archive: &Archive, before_index: u64) -> Result<(), ArchiveError> {
    raise(archive, "expired.json", Expired { before_index }, |e| {
        e.before_index
    })
    .await
}

/// Raises the head record to `archived_through` (never lowers it).
pub async fn raise_head(archive: &Archive, archived_through: u64) -> Result<(), ArchiveError> {
    raise(archive, "head.json", Head { archived_through }, |h| {
        h.archived_through
    })
    .await
}

/// Overwrites record `name` with `new` unless it already holds as much.
async fn raise<T>(
    archive: &Archive,
    name: &str,
    new: T,
    value: fn(&T) -> u64,
) -> Result<(), ArchiveError>
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let current = read::<T>(archive, name).await?;
    if current.is_some_and(|c| value(&c) >= value(&new)) {
        return Ok(());
    }
    write(archive, name, &new, PutMode::Overwrite)
        .await
        .map_err(ArchiveError::store(key(&archive.prefix, name).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> Archive {
        Archive {
            store: std::sync::Arc::new(object_store::memory::InMemory::new()),
            prefix: "t".into(),
            location: "mem".into(),
        }
    }

    #[tokio::test]
    async fn an_archive_without_records_reads_as_empty_bounds() {
        let a = archive();
        assert_eq!(read_bounds(&a).await.unwrap(), Bounds::default());
        assert_eq!(Bounds::default().expected_first(), 0);
    }

    #[tokio::test]
    async fn the_first_origin_stays_and_later_ones_read_it_back() {
        let a = archive();
        assert_eq!(ensure_origin(&a, 40).await.unwrap(), 40);
        assert_eq!(ensure_origin(&a, 90).await.unwrap(), 40);
        assert_eq!(read_bounds(&a).await.unwrap().origin, Some(40));
    }

    #[tokio::test]
    async fn expiry_and_head_only_rise() {
        let a = archive();
        raise_expired(&a, 100).await.unwrap();
        raise_expired(&a, 50).await.unwrap();
        raise_head(&a, 300).await.unwrap();
        raise_head(&a, 200).await.unwrap();
        ensure_origin(&a, 0).await.unwrap();
        let b = read_bounds(&a).await.unwrap();
        assert_eq!(b.expired_before, Some(100));
        assert_eq!(b.archived_through, Some(300));
        assert_eq!(b.expected_first(), 100);
    }
}
