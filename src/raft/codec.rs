//! Conversions between openraft entries and `pb::log::LogEntry`, the single
//! binary form used both on disk (redb) and on the wire (AppendEntries).
//!
//! Invariant: `decode(encode(e)) == e` for every entry openraft can produce.
//! Payload bytes are `bytes::Bytes`, so decoding from a buffer that is itself
//! `Bytes` shares it instead of copying.

use bytes::Bytes;
use openraft::vote::leader_id_adv::LeaderId;
use openraft::{EntryPayload, LogId as RaftLogId};
use prost::Message;

use super::{Entry, LogId};
use crate::pb::log::{log_entry::Payload, LogEntry};

/// Why bytes could not be turned back into an entry. Never retryable: the
/// stored or received bytes are wrong.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The protobuf framing is broken.
    #[error("log entry does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The membership JSON is broken.
    #[error("membership in log entry {index} does not decode: {source}")]
    Membership {
        /// Index of the broken entry.
        index: u64,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The entry has no payload variant.
    #[error("log entry {0} has no payload")]
    MissingPayload(u64),
    /// A membership did not serialise (it never should: ids and strings).
    #[error("membership in log entry {index} does not encode: {source}")]
    EncodeMembership {
        /// Index of the entry.
        index: u64,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Builds a log id from its three numbers.
pub fn log_id(term: u64, leader_node: u64, index: u64) -> LogId {
    RaftLogId::new(
        LeaderId {
            term,
            node_id: leader_node,
        },
        index,
    )
}

/// Converts an entry into its protobuf form. A membership that does not
/// serialise is an error here, at its cause, never an empty payload in the
/// log.
pub fn to_pb(entry: &Entry) -> Result<LogEntry, CodecError> {
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(true),
        EntryPayload::Normal(cmd) => Payload::Command(cmd.clone()),
        EntryPayload::Membership(m) => {
            let json = serde_json::to_vec(m).map_err(|source| CodecError::EncodeMembership {
                index: entry.log_id.index,
                source,
            })?;
            Payload::MembershipJson(Bytes::from(json))
        }
    };
    Ok(LogEntry {
        term: entry.log_id.leader_id.term,
        leader_node: entry.log_id.leader_id.node_id,
        index: entry.log_id.index,
        payload: Some(payload),
    })
}

/// Converts the protobuf form back into an entry.
pub fn from_pb(pb: LogEntry) -> Result<Entry, CodecError> {
    let log_id = log_id(pb.term, pb.leader_node, pb.index);
    let payload = match pb.payload {
        Some(Payload::Blank(_)) => EntryPayload::Blank,
        Some(Payload::Command(cmd)) => EntryPayload::Normal(cmd),
        Some(Payload::MembershipJson(json)) => {
            EntryPayload::Membership(serde_json::from_slice(&json).map_err(|source| {
                CodecError::Membership {
                    index: pb.index,
                    source,
                }
            })?)
        }
        None => return Err(CodecError::MissingPayload(pb.index)),
    };
    Ok(Entry { log_id, payload })
}

/// Encodes an entry to bytes for storage.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    Ok(to_pb(entry)?.encode_to_vec())
}

/// The length of [`encode`]'s output, without the bytes (payloads are
/// shared, not copied).
pub fn encoded_len(entry: &Entry) -> Result<usize, CodecError> {
    Ok(to_pb(entry)?.encoded_len())
}

/// Decodes an entry from stored bytes.
pub fn decode(bytes: Bytes) -> Result<Entry, CodecError> {
    from_pb(LogEntry::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::Membership;

    use super::*;
    use crate::pb::log::{command::Kind, Command, IngestRequest, Signal};
    use crate::raft::Member;

    fn roundtrip(e: Entry) {
        let bytes = Bytes::from(encode(&e).expect("encodes"));
        let back = decode(bytes).expect("decodes");
        assert_eq!(back, e);
    }

    #[test]
    fn every_payload_kind_roundtrips() {
        roundtrip(Entry {
            log_id: log_id(3, 1, 7),
            payload: EntryPayload::Blank,
        });
        let cmd = Command {
            kind: Some(Kind::Ingest(IngestRequest {
                signal: Signal::Logs as i32,
                payload: Bytes::from_static(b"\x0a\x00"),
                records: 2,
                received_unix_nanos: 11,
                origin_node: 2,
                proposed_unix_nanos: 12,
                proposer_node: 1,
                digest: Bytes::new(),
            })),
        };
        roundtrip(Entry {
            log_id: log_id(3, 1, 8),
            payload: EntryPayload::Normal(cmd),
        });
        let nodes: BTreeMap<u64, Member> = [(
            1,
            Member {
                peer_addr: "a:1".into(),
                admin_addr: "a:2".into(),
                role: crate::raft::Role::Witness,
            },
        )]
        .into();
        let m = Membership::new(vec![BTreeSet::from([1])], nodes).expect("valid membership");
        roundtrip(Entry {
            log_id: log_id(4, 2, 9),
            payload: EntryPayload::Membership(m),
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(Bytes::from_static(b"\xff\xff\xff")).is_err());
        assert!(
            decode(Bytes::new()).is_err(),
            "an entry without payload is refused"
        );
    }
}
