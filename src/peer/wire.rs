//! The peer protocol's wire conventions, in both directions: what a gRPC
//! status from a peer means for a client write, and what a refused write
//! tells the member that forwarded it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::Status;

use super::client::PeerError;
use crate::ingest::SubmitError;
use crate::raft::{LogId, NodeId, Vote};

/// gRPC code a leader uses to say "I am not the leader": the follower may
/// retry elsewhere because nothing was proposed.
pub const NOT_LEADER: tonic::Code = tonic::Code::FailedPrecondition;

/// The non-entry fields of AppendEntries, carried as JSON.
#[derive(Serialize, Deserialize)]
pub struct AppendHeader {
    /// The leader's vote.
    pub vote: Vote,
    /// Log id preceding the entries.
    pub prev_log_id: Option<LogId>,
    /// The leader's commit position.
    pub leader_commit: Option<LogId>,
}

/// Maps a refused write to the status the forwarding member understands
/// (the inverse of `submit_error`).
pub fn submit_status(e: &SubmitError) -> Status {
    match e {
        SubmitError::Overloaded { .. } => Status::resource_exhausted(e.to_string()),
        SubmitError::TooLarge(_) => Status::out_of_range(e.to_string()),
        SubmitError::Invalid(_) => Status::invalid_argument(e.to_string()),
        SubmitError::NoLeader { .. } => Status::new(NOT_LEADER, e.to_string()),
        SubmitError::ShuttingDown | SubmitError::Internal(_) => Status::unavailable(e.to_string()),
    }
}

/// What a failed forward to `leader` means for the client whose write it
/// carried (the inverse of `submit_status`).
pub fn submit_error(leader: NodeId, e: PeerError) -> SubmitError {
    match &e {
        PeerError::Status { code, message, .. } => match *code {
            NOT_LEADER => SubmitError::NoLeader {
                reason: message.clone(),
                retry_after: Duration::from_secs(1),
            },
            tonic::Code::ResourceExhausted => SubmitError::Overloaded {
                reason: message.clone(),
                retry_after: Duration::from_secs(1),
            },
            tonic::Code::OutOfRange => SubmitError::TooLarge(message.clone()),
            tonic::Code::InvalidArgument => SubmitError::Invalid(message.clone()),
            // The leader may have been reached: the outcome is unknown.
            tonic::Code::DeadlineExceeded => {
                SubmitError::Internal(format!("forward to leader {leader}: {e}"))
            }
            // Unreachable before anything was sent: safe to call NoLeader,
            // but not to retry blindly here (the bytes may be in flight).
            tonic::Code::Unavailable => {
                SubmitError::Internal(format!("leader {leader} unavailable: {e}"))
            }
            _ => SubmitError::Internal(format!("forward to leader {leader}: {e}")),
        },
        _ => SubmitError::Internal(format!("forward to leader {leader}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_forwarded_write_comes_back_as_invalid_and_is_not_retried() {
        let refused = SubmitError::Invalid("3 records, but the write says 4".into());
        let status = submit_status(&refused);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let back = submit_error(
            1,
            PeerError::Status {
                addr: "127.0.0.1:4400".into(),
                code: status.code(),
                message: status.message().to_string(),
            },
        );
        assert!(matches!(back, SubmitError::Invalid(_)), "{back}");
        assert!(!back.retryable());
    }
}
