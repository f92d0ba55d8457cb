//! Opens the archive's object store from the `[archive]` section: a local
//! directory through `LocalFileSystem` by default, or an S3-compatible bucket.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::block::MAX_UNCOMPRESSED_LEN;
use super::ArchiveError;
use crate::backoff::Backoff;
use crate::config::archive::ArchiveConfig;
use crate::metrics::{self, Metrics};

/// The archive's object store and where its objects live in it.
#[derive(Clone)]
pub struct Archive {
    /// The store (bucket or local directory).
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix of every object of this cluster.
    pub prefix: String,
    /// For messages: `s3://bucket/prefix` or `file:///dir/prefix`.
    pub location: String,
}

/// Largest object the archive reads: a block's body is at most
/// [`MAX_UNCOMPRESSED_LEN`] and zstd never grows it by more than a little,
/// so anything larger is not a block of ours and is not downloaded.
pub const MAX_OBJECT_BYTES: u64 = MAX_UNCOMPRESSED_LEN + (1 << 20);

/// Refuses, before reading it, an object too large to be a block.
pub(crate) fn check_object_size(key: &str, size: u64) -> Result<(), ArchiveError> {
    if size > MAX_OBJECT_BYTES {
        return Err(ArchiveError::Block {
            key: key.to_string(),
            source: super::block::BlockError::TooLarge(size),
        });
    }
    Ok(())
}

impl Archive {
    /// Downloads the object at `key`; `None` if there is none (retention may
    /// delete old blocks while a reader runs).
    pub async fn get_if_present(&self, key: &str) -> Result<Option<bytes::Bytes>, ArchiveError> {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(key);
        let got = match self.store.get(&path).await {
            Ok(got) => {
                check_object_size(key, got.meta.size)?;
                got.bytes().await
            }
            Err(e) => Err(e),
        };
        match got {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ArchiveError::store(key)(e)),
        }
    }

    /// Opens the store described by `config`. Builds the client only; it does
    /// not contact the server (see `archiver::probe`).
    pub fn open(config: &ArchiveConfig) -> Result<Archive, ArchiveError> {
        match &config.s3 {
            None => {
                std::fs::create_dir_all(&config.dir).map_err(|e| ArchiveError::Open {
                    location: config.dir.display().to_string(),
                    message: e.to_string(),
                })?;
                let local = LocalFileSystem::new_with_prefix(&config.dir)
                    .map_err(|e| ArchiveError::Open {
                        location: config.dir.display().to_string(),
                        message: e.to_string(),
                    })?
                    // An Archived record must never point at bytes a power
                    // loss could take back.
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                Ok(Archive {
                    store: Arc::new(local),
                    prefix: config.prefix.clone(),
                    location: format!("file://{}/{}", config.dir.display(), config.prefix),
                })
            }
            Some(s3) => {
                let credentials =
                    s3.credentials(std::env::vars())
                        .map_err(|e| ArchiveError::Open {
                            location: format!("s3://{}", s3.bucket),
                            message: e.to_string(),
                        })?;
                let timeout = Duration::from_millis(config.request_timeout_ms);
                let mut client = ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(Duration::from_secs(5).min(timeout))
                    .with_allow_http(s3.allow_http);
                let roots = s3.roots().map_err(|e| ArchiveError::Open {
                    location: format!("s3://{}", s3.bucket),
                    message: e.to_string(),
                })?;
                if !roots.is_empty() {
                    client = client.with_no_system_certificates(true);
                    for root in roots {
                        client = client.with_root_certificate(root);
                    }
                }
                // The archiver has its own retry loop with backoff; the
                // client's is kept short so a dead server shows up quickly
                // in status instead of hiding inside one call.
                let retry = RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(1),
                        base: 2.0,
                    },
                    max_retries: 2,
                    retry_timeout: timeout,
                };
                let store = AmazonS3Builder::new()
                    .with_endpoint(&s3.endpoint)
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(credentials.access_key_id)
                    .with_secret_access_key(credentials.secret_access_key)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_conditional_put(S3ConditionalPut::ETagMatch)
                    .with_client_options(client)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| ArchiveError::Open {
                        location: format!("s3://{}", s3.bucket),
                        message: e.to_string(),
                    })?;
                Ok(Archive {
                    store: Arc::new(store),
                    prefix: config.prefix.clone(),
                    location: format!("s3://{}/{}", s3.bucket, config.prefix),
                })
            }
        }
    }
}

/// Counts one object-store request by operation and outcome.
pub(crate) fn count_request<T>(
    metrics: &Metrics,
    op: &str,
    outcome: &Result<T, object_store::Error>,
) {
    let outcome = match outcome {
        Ok(_) => "ok",
        Err(object_store::Error::AlreadyExists { .. }) => "already_exists",
        Err(_) => "error",
    };
    metrics
        .archive_requests
        .get_or_create(&metrics::archive_request(op, outcome))
        .inc();
}

/// The delays between retries of a failed archive request.
pub(crate) fn retry_backoff(config: &ArchiveConfig) -> Backoff {
    Backoff::new(
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_too_large_to_be_a_block_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let archive = Archive {
            store: Arc::new(store),
            prefix: String::new(),
            location: "test".into(),
        };
        // A sparse file: its size is what the store reports, nothing is
        // written, and reading it would take over a GiB.
        let file = std::fs::File::create(dir.path().join("huge")).unwrap();
        file.set_len(MAX_OBJECT_BYTES + 1).unwrap();
        let err = archive.get_if_present("huge").await.unwrap_err();
        assert!(matches!(err, ArchiveError::Block { .. }), "{err}");
        std::fs::write(dir.path().join("small"), b"abc").unwrap();
        let got = archive.get_if_present("small").await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"abc"[..]));
    }
}
