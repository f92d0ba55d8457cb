//! Loki sinks: the push API and Loki 3's OTLP endpoint.
//!
//! - [`request`]: OTLP log records to a `PushRequest` (stream labels,
//!   structured metadata, deterministic timestamps and lines).
//! - [`otlp`]: OTLP log requests merged for `/otlp/v1/logs`.

pub mod otlp;
pub mod request;
