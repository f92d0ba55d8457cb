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
//! behind, never ahead of the blocks. Raising is read-then-overwrite, done
//! only by a leader that holds its lease (checked just before), so two
//! leaders race only within a lease's margin; a lost race lowers a record,
//! and `verify` then reports a range as missing that is not: a false
//! alarm, never a loss passed as whole.

use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Archive, ArchiveError};

/// What the bucket says about the archive's extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The first index the cluster archived.
    pub origin: Option<u64>,
    /// Blocks below this index were deleted by retention.
    pub expired_before: Option<u64>,
    /// The cluster recorded blocks through this index.
    pub archived_through: Option<u64>,
}

impl Bounds {
    /// Whether the archive was written before bounds were recorded: no
    /// record at all. Its start cannot be checked (retention may have
    /// deleted its first blocks without saying so).
    pub fn is_legacy(&self) -> bool {
        *self == Bounds::default()
    }

    /// The first index a block must cover: what neither the origin nor
    /// retention accounts for is lost. Without an origin the archive is
    /// taken to begin at 0, where every cluster's archive began.
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

const ORIGIN: &str = "origin.json";
const EXPIRED: &str = "expired.json";
const HEAD: &str = "head.json";

fn key(prefix: &str, name: &str) -> Path {
    Path::from(format!("{prefix}/bounds/{name}"))
}

/// Reads one record; `None` when it is absent. A record that does not
/// parse is an error naming it.
async fn read<T: for<'de> Deserialize<'de>>(
    archive: &Archive,
    name: &str,
) -> Result<Option<T>, ArchiveError> {
    let key = key(&archive.prefix, name);
    let Some(bytes) = archive.get_if_present(key.as_ref()).await? else {
        return Ok(None);
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
    // Never an empty record: a value that does not serialise is an error.
    let bytes = serde_json::to_vec(value).map_err(|e| object_store::Error::Generic {
        store: "bounds",
        source: Box::new(e),
    })?;
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

/// The origin record.
pub async fn read_origin(archive: &Archive) -> Result<Option<u64>, ArchiveError> {
    Ok(read::<Origin>(archive, ORIGIN)
        .await?
        .map(|o| o.first_index))
}

/// The retention record.
pub async fn read_expired(archive: &Archive) -> Result<Option<u64>, ArchiveError> {
    Ok(read::<Expired>(archive, EXPIRED)
        .await?
        .map(|e| e.before_index))
}

/// The head record.
pub async fn read_head(archive: &Archive) -> Result<Option<u64>, ArchiveError> {
    Ok(read::<Head>(archive, HEAD)
        .await?
        .map(|h| h.archived_through))
}

/// Records that the cluster's archive begins at `first_index`, unless an
/// origin is recorded already; returns the recorded origin.
pub async fn ensure_origin(archive: &Archive, first_index: u64) -> Result<u64, ArchiveError> {
    match write(archive, ORIGIN, &Origin { first_index }, PutMode::Create).await {
        Ok(()) => Ok(first_index),
        Err(object_store::Error::AlreadyExists { .. }) => {
            read_origin(archive).await?.ok_or_else(|| {
                ArchiveError::Missing(format!(
                    "{} exists but could not be read back",
                    key(&archive.prefix, ORIGIN)
                ))
            })
        }
        Err(e) => Err(ArchiveError::store(
            key(&archive.prefix, ORIGIN).to_string(),
        )(e)),
    }
}

/// Raises the retention record to `before_index` (never lowers it).
pub async fn raise_expired(archive: &Archive, before_index: u64) -> Result<(), ArchiveError> {
    raise(archive, EXPIRED, Expired { before_index }, |e| {
        e.before_index
    })
    .await
}

/// Raises the head record to `archived_through` (never lowers it).
pub async fn raise_head(archive: &Archive, archived_through: u64) -> Result<(), ArchiveError> {
    raise(archive, HEAD, Head { archived_through }, |h| {
        h.archived_through
    })
    .await
}

/// Sets the head record to `archived_through`, lower or not: a restore
/// that sets the lost cluster's later blocks aside continues the archive
/// from its restore point.
pub async fn reset_head(archive: &Archive, archived_through: u64) -> Result<(), ArchiveError> {
    write(
        archive,
        HEAD,
        &Head { archived_through },
        PutMode::Overwrite,
    )
    .await
    .map_err(ArchiveError::store(key(&archive.prefix, HEAD).to_string()))
}

/// Overwrites record `name` with `new` unless it already holds as much. A
/// record that does not parse is replaced.
async fn raise<T>(
    archive: &Archive,
    name: &str,
    new: T,
    value: fn(&T) -> u64,
) -> Result<(), ArchiveError>
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let current = read::<T>(archive, name).await.ok().flatten();
    if current.is_some_and(|c| value(&c) >= value(&new)) {
        return Ok(());
    }
    write(archive, name, &new, PutMode::Overwrite)
        .await
        .map_err(ArchiveError::store(key(&archive.prefix, name).to_string()))
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

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
        assert_eq!(read_origin(&a).await.unwrap(), None);
        assert_eq!(read_expired(&a).await.unwrap(), None);
        assert_eq!(read_head(&a).await.unwrap(), None);
        assert!(Bounds::default().is_legacy());
        assert_eq!(Bounds::default().expected_first(), 0);
    }

    #[tokio::test]
    async fn the_first_origin_stays_and_later_ones_read_it_back() {
        let a = archive();
        assert_eq!(ensure_origin(&a, 40).await.unwrap(), 40);
        assert_eq!(ensure_origin(&a, 90).await.unwrap(), 40);
        assert_eq!(read_origin(&a).await.unwrap(), Some(40));
    }

    #[tokio::test]
    async fn expiry_and_head_only_rise() {
        let a = archive();
        raise_expired(&a, 100).await.unwrap();
        raise_expired(&a, 50).await.unwrap();
        raise_head(&a, 300).await.unwrap();
        raise_head(&a, 200).await.unwrap();
        assert_eq!(read_expired(&a).await.unwrap(), Some(100));
        assert_eq!(read_head(&a).await.unwrap(), Some(300));
        reset_head(&a, 120).await.unwrap();
        assert_eq!(read_head(&a).await.unwrap(), Some(120));
    }

    #[tokio::test]
    async fn a_malformed_record_is_an_error_naming_it_and_raising_replaces_it() {
        let a = archive();
        a.store
            .put(&key("t", HEAD), PutPayload::from("not json"))
            .await
            .unwrap();
        let e = read_head(&a).await.unwrap_err().to_string();
        assert!(e.contains("t/bounds/head.json"), "{e}");
        raise_head(&a, 7).await.unwrap();
        assert_eq!(read_head(&a).await.unwrap(), Some(7));
    }
}
