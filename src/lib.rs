//! otelraft: an OpenTelemetry ingestion store replicated with Raft.
//!
//! Any member accepts OTLP; a request is acknowledged only after the entry
//! that carries it is committed, that is appended and fsynced on a quorum.
//!
//! # Layout
//!
//! Layers, bottom up; a module imports only from its own layer or below
//! (`docs/architecture.md`; `tests/layers.rs` guards it).
//!
//! 1. Types, codec and clock:
//!    - [`pb`]: generated protobuf types for the log and the peer service.
//!    - [`raft`]: openraft's type configuration, member and role types, the entry codec.
//!    - [`metrics`]: the node's own Prometheus metrics.
//!    - [`clock`]: the wall clock, read in one place.
//!    - [`backoff`]: capped exponential backoff with jitter.
//!    - [`text`]: quoting untrusted input in logs and replies, a few hundred bytes at most.
//!    - [`log_limit`]: at most one log line per second for what anyone can cause.
//! 2. Security, configuration, the replicated state:
//!    - [`tls`]: TLS on every listener, mutual TLS and node identity between members.
//!    - [`auth`]: bearer tokens for the OTLP ports and the admin API.
//!    - [`config`]: the per-node TOML file, `OTELRAFT_*` overrides and validation.
//!    - [`state`]: the replicated state machine's model, pure: sinks, series marks, dead letters, archive.
//! 3. Storage and ingest:
//!    - [`store`]: redb-backed Raft log and the persisted state, with a single group-commit writer.
//!    - [`ingest`]: OTLP gRPC and HTTP receivers behind the `IngestHandler` trait.
//! 4. [`peer`]: the peer protocol's client side (channels, forwarding, openraft's network, the admin HTTP client).
//! 5. [`node`]: the node core (Raft, store, peers, config, metrics), its gate, submit path, readiness and membership.
//! 6. The duties, export and archive, side by side:
//!    - [`drain`]: graceful stop: refuse new requests, finish accepted ones, hand off leadership.
//!    - [`witness`]: a witness keeps its log until every data voter holds it.
//!    - [`trim`]: deletes log rows once every sink and the archive are done with them.
//!    - [`join`]: a node with empty storage asks the cluster for a place (or bootstraps, safely).
//!    - [`export`]: leader-only, exactly-once export to Prometheus and Loki.
//!    - [`archive`]: committed entries sealed into blocks in object storage.
//! 7. Adapters: [`admin`], the admin HTTP API; `peer::server`, the peer gRPC service.
//! 8. [`server`]: `otelraft serve`, the composition root; [`cli`]: the operator tools.
//! 9. `main.rs`: the command-line dispatcher.

pub mod admin;
pub mod archive;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod drain;
pub mod export;
pub mod ingest;
pub mod join;
pub mod log_limit;
pub mod metrics;
pub mod node;
pub mod pb;
pub mod peer;
pub mod raft;
pub mod server;
pub mod state;
pub mod store;
pub mod text;
pub mod tls;
pub mod trim;
pub mod witness;
