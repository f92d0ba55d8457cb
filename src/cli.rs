//! The operator tools: everything `otelraft` does besides `serve` (which
//! [`command`] starts). Each
//! talks to a node through its admin API, or reads a stopped node's files
//! or the archive; none runs inside a node.
//!
//! # Layout
//!
//! - [`command`]: the command line (clap) and its dispatch; `main.rs` only calls it.
//! - [`admin`]: `otelraft admin …`, the admin API's command-line client.
//! - [`archive`]: `otelraft archive ls | cat`.
//! - [`archive_command`]: `otelraft archive …` against the archive a config names.
//! - [`local_cluster`]: `otelraft local-cluster`, three processes on 127.0.0.1-3.
//! - [`bench`]: `otelraft bench`, a closed-loop OTLP load generator.
//! - [`certs`]: `otelraft certs`, a development CA and member certificates.
//! - [`inspect`]: `otelraft inspect`, a stopped node's log as JSON lines.
//! - [`restore`]: `otelraft restore`, a new node built from the archive.
//! - [`replay`]: `otelraft archive replay`, backfill a sink from the archive.

pub mod admin;
pub mod archive;
pub mod archive_command;
pub mod bench;
pub mod certs;
pub mod command;
pub mod inspect;
pub mod local_cluster;
pub mod replay;
pub mod restore;
