//! otelraft: an OpenTelemetry ingestion store replicated with Raft.
//!
//! Any member accepts OTLP; a request is acknowledged only after the entry
//! that carries it is committed, that is appended and fsynced on a quorum.
//!
//! # Layout
//!
//! - [`config`]: the per-node TOML file, `OTELRAFT_*` overrides and validation.
//! - [`pb`]: generated protobuf types for the log and the peer service.
//! - [`export`]: leader-only, exactly-once export to Prometheus and Loki.
//! - [`archive`]: committed entries sealed into blocks in object storage; restore.
//! - [`ingest`]: OTLP gRPC and HTTP receivers behind the `IngestHandler` trait.
//! - [`inspect`]: `otelraft inspect`, a stopped node's log as JSON lines.
//! - [`raft`]: openraft type configuration, entry codec and the peer network client.
//! - [`store`]: redb-backed Raft log and state machine with a single group-commit writer.
//! - [`restore`]: `otelraft restore`, a new node built from the archive after total loss.
//! - [`trim`]: deletes log rows once every sink and the archive are done with them.
//! - [`witness`]: a witness keeps its log until every data voter holds it.
//! - [`peer`]: the internal gRPC service (Raft RPCs and forwarded writes).
//! - [`bench`]: `otelraft bench`, a closed-loop OTLP load generator.
//! - [`cluster`]: a running node: Raft plus the submit path that ingest calls.
//! - [`admin`]: admin HTTP API (status, membership, health, metrics) and its CLI client.
//! - [`metrics`]: the node's own Prometheus metrics.
//! - [`drain`]: graceful stop: refuse new requests, finish accepted ones, hand off leadership.
//! - [`join`]: a node with empty storage asks the cluster for a place (or bootstraps, safely).
//! - [`server`]: `otelraft serve`: binds every listener of a node and drains on shutdown.
//! - [`local_cluster`]: `otelraft local-cluster`, three processes on 127.0.0.1.
//! - [`tls`]: TLS on every listener, mutual TLS and node identity between members.
//! - [`certs`]: `otelraft certs`, a development CA and member certificates.
//! - [`auth`]: bearer tokens for the OTLP ports and the admin API.

pub mod admin;
pub mod archive;
pub mod auth;
pub mod bench;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod drain;
pub mod export;
pub mod ingest;
pub mod inspect;
pub mod join;
pub mod local_cluster;
pub mod metrics;
pub mod pb;
pub mod peer;
pub mod raft;
pub mod restore;
pub mod server;
pub mod store;
pub mod tls;
pub mod trim;
pub mod witness;
