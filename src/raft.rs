//! The Raft types: openraft's type configuration, the member and role
//! types, and (`codec`) the conversions between openraft entries and the
//! on-disk/on-wire format. A leaf: it imports only the protobuf types.

pub mod codec;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pb::log::Command;

/// A member's identity. Ids are assigned by the operator and never reused.
pub type NodeId = u64;

/// What a member is for. A node declares its role in its own config; the
/// leader checks the declaration before recording it in the membership, so
/// the two always agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full log and state machine; may lead, export and archive.
    #[default]
    Data,
    /// A voter that keeps the log durably and nothing else: it never
    /// campaigns, exports, archives or serves snapshots (`docs/operations.md`).
    Witness,
}

impl Role {
    /// True for the default role, which the membership JSON leaves out.
    pub fn is_data(&self) -> bool {
        *self == Role::Data
    }

    /// `data` or `witness`, as in configs and status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Witness => "witness",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cluster records about each member: where to reach it, and its
/// role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` of the peer gRPC service (Raft and forwarded writes).
    pub peer_addr: String,
    /// `host:port` of the admin HTTP API (status, health, metrics).
    pub admin_addr: String,
    /// Absent in membership records written before roles existed: data.
    #[serde(default, skip_serializing_if = "Role::is_data")]
    pub role: Role,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} peer={} admin={}",
            self.role, self.peer_addr, self.admin_addr
        )
    }
}

openraft::declare_raft_types!(
    /// openraft type configuration for otelraft.
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = NodeId,
        Node = Member,
);

/// A log entry as openraft sees it.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote as openraft persists it.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Membership plus the id of the log entry that set it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
