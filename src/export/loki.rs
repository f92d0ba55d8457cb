//! Loki sinks: the push API and Loki 3's OTLP endpoint.
//!
//! - [`request`]: OTLP log records to a `PushRequest` (stream labels,
//!   structured metadata, deterministic timestamps and lines).
//! - [`otlp`]: OTLP log requests merged for `/otlp/v1/logs`.
//! - [`readback`]: what Loki holds of a batch, found through its query API
//!   before anything is sent again.
//! - `sink`: one sink for both endpoints over the shared HTTP service.

pub mod otlp;
pub mod readback;
pub mod request;
mod sink;

pub use self::sink::{LokiFormat, LokiSink};
