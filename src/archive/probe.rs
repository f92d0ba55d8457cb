//! The store probe, on every member: lists the archive prefix now and then
//! and reports a store that is unreachable or misconfigured, or a local
//! archive directory the members do not share, in `/health/ready`.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;

use super::block;
use super::progress::Progress;
use super::store::{count_request, retry_backoff, Archive};
use crate::config::archive::ArchiveConfig;
use crate::node::Node;

/// How often a healthy store is probed; a failing one every retry delay.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// Lists the archive prefix now and then, so bad credentials or a missing
/// bucket show in `/health/ready` on every member, not only on the leader
/// when it first uploads.
pub(super) async fn run(
    node: Arc<Node>,
    progress: Progress,
    archive: Archive,
    config: ArchiveConfig,
) {
    let mut backoff = retry_backoff(&config);
    let prefix = block::blocks_prefix(&archive.prefix);
    loop {
        let outcome = archive.store.list_with_delimiter(Some(&prefix)).await;
        count_request(node.metrics(), "list", &outcome);
        let delay = match outcome {
            Ok(_) => {
                backoff.reset();
                let unshared = unshared_local_dir(&node, &config);
                let before = progress.snapshot().misconfigured;
                if unshared.is_some() && before != unshared {
                    tracing::error!(
                        dir = %config.dir.display(),
                        "the archive is split across the members: {}",
                        unshared.as_deref().unwrap_or_default()
                    );
                }
                progress.update(|p| p.misconfigured = unshared);
                // Until the membership is known, the split check cannot run.
                let known = node
                    .raft_metrics()
                    .membership_config
                    .membership()
                    .nodes()
                    .count()
                    > 0;
                if known {
                    PROBE_INTERVAL
                } else {
                    Duration::from_secs(1)
                }
            }
            Err(e) => {
                let message = format!("cannot list {}: {e}", archive.location);
                let fatal = is_misconfiguration(&e);
                tracing::warn!(location = %archive.location, error = %e, misconfigured = fatal, "archive probe failed");
                let unshared = unshared_local_dir(&node, &config);
                progress.update(|p| {
                    p.misconfigured = if fatal {
                        Some(message.clone())
                    } else {
                        unshared
                    };
                    p.last_error = Some(message);
                });
                backoff.next_delay(None)
            }
        };
        if node.raft_metrics().running_state.is_err() {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}

/// Why a local-directory archive cannot be the cluster's one archive: it
/// lies inside this node's own data directory, so each data node that
/// leads would write its blocks somewhere the others never see. A
/// directory elsewhere is taken to be shared storage (docs/archive.md).
pub fn unshared_local_dir(node: &Node, config: &ArchiveConfig) -> Option<String> {
    // Both exist by now (the store opened them); compare them resolved.
    let resolve = |p: &std::path::Path| {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    if config.s3.is_some() || !resolve(&config.dir).starts_with(resolve(&node.config().data_dir)) {
        return None;
    }
    let data_nodes = node
        .raft_metrics()
        .membership_config
        .membership()
        .nodes()
        .filter(|(_, m)| m.role == crate::raft::Role::Data)
        .count();
    (data_nodes > 1).then(|| {
        format!(
            "archive.dir {} is inside this node's data_dir and the cluster has {data_nodes} data nodes: \
             each leader would archive into its own directory; set archive.dir to one directory \
             every member shares, or configure [archive.s3]",
            config.dir.display()
        )
    })
}

/// Errors that retrying cannot fix: the operator must change the config or
/// create the bucket. object_store reports S3 listing errors as `Generic`
/// with the server's code in the text, so those are recognised by it.
fn is_misconfiguration(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => true,
        object_store::Error::Generic { source, .. } => {
            let text = source.to_string();
            [
                "NoSuchBucket",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "NotSignedUp",
                "403 Forbidden",
            ]
            .iter()
            .any(|code| text.contains(code))
        }
        _ => false,
    }
}
