//! Generated protobuf types: the replicated log, the peer service and the
//! two sink wire formats (Prometheus remote write, Loki push).
//!
//! The `.proto` sources live in `proto/`; `build.rs` compiles them.
//! The module nesting mirrors the protobuf packages so generated cross-package
//! paths resolve.

use std::fmt;

#[allow(missing_docs, clippy::all)]
mod generated {
    pub mod otelraft {
        pub mod log {
            pub mod v1 {
                tonic::include_proto!("otelraft.log.v1");
            }
        }
        pub mod peer {
            pub mod v1 {
                tonic::include_proto!("otelraft.peer.v1");
            }
        }
    }
    pub mod prometheus {
        tonic::include_proto!("prometheus");
    }
    pub mod logproto {
        tonic::include_proto!("logproto");
    }
}

/// Loki push API request messages, for the Loki sink.
pub use generated::logproto as loki;
/// Log payload types, shared by storage, the peer service and ingest.
pub use generated::otelraft::log::v1 as log;
/// The internal member-to-member gRPC service.
pub use generated::otelraft::peer::v1 as peer;
/// Prometheus remote write 1.0 request messages, for the Prometheus sink.
pub use generated::prometheus;

impl fmt::Display for log::Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use log::command::Kind;
        match &self.kind {
            Some(Kind::Ingest(r)) => write!(
                f,
                "ingest({:?}, {} records, {} bytes)",
                log::Signal::try_from(r.signal).unwrap_or(log::Signal::Unspecified),
                r.records,
                r.payload.len()
            ),
            Some(Kind::Cursor(c)) => write!(f, "cursor({} -> {})", c.sink, c.index),
            Some(Kind::Archived(a)) => write!(
                f,
                "archived({}..={} {})",
                a.first_index, a.last_index, a.key
            ),
            Some(Kind::Seal(s)) => write!(f, "seal({}..={})", s.first_index, s.last_index),
            Some(Kind::Identity(i)) => write!(f, "identity({})", crate::text::quote(&i.id)),
            None => write!(f, "empty"),
        }
    }
}

impl log::Signal {
    /// The lower-case name used in metrics, status and docs.
    pub fn name(self) -> &'static str {
        match self {
            log::Signal::Logs => "logs",
            log::Signal::Metrics => "metrics",
            log::Signal::Traces => "traces",
            log::Signal::Unspecified => "unspecified",
        }
    }
}
