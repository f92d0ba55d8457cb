//! The peer protocol: how members talk to each other.
//!
//! # Layout
//!
//! - [`wire`]: the protocol's conventions both sides share (status ⇄ error
//!   mapping, `NOT_LEADER`, the AppendEntries header).
//! - [`client`]: the channel pool, write forwarding and `NodeInfo` calls.
//! - [`network`]: openraft's network factory over that pool.
//! - [`admin_client`]: the HTTP client for another member's admin API.
//! - [`server`]: the peer gRPC service (an adapter over the node).
//! - `authorize`: which member may make which call (mutual TLS identity).
//!
//! `wire`, `client`, `network` and `admin_client` sit below the node and
//! import only types, protobuf, TLS and the store; `server` and
//! `authorize` sit above it (see `docs/architecture.md`).

pub mod admin_client;
mod authorize;
pub mod client;
pub mod network;
pub mod server;
pub mod wire;

pub use server::PeerService;
