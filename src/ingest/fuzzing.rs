//! The receivers' decode path without a server, for `fuzz/` (compiled
//! only under `cfg(fuzzing)`, which `cargo fuzz` sets).

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::admission::Admission;
use super::decode::{decode_body, Coding, DecodeLimits, Format};
use super::request::{check_encoded, OtlpRequest};
use super::shape::scan_protobuf;
use crate::config::IngestLimits;
use crate::pb::log::Signal;

/// Decodes `bytes` as a receiver would (gunzip when `gzip`, shape scan,
/// decode, validation, labelling, encoding) and checks what must hold of
/// any input: the scan never counts fewer records than were decoded.
pub fn decode(signal: Signal, json: bool, gzip: bool, bytes: &[u8]) {
    let format = if json { Format::Json } else { Format::Protobuf };
    let coding = if gzip { Coding::Gzip } else { Coding::Identity };
    match signal {
        Signal::Logs => run::<ExportLogsServiceRequest>(format, coding, bytes),
        Signal::Metrics => run::<ExportMetricsServiceRequest>(format, coding, bytes),
        Signal::Traces | Signal::Unspecified => {
            run::<ExportTraceServiceRequest>(format, coding, bytes)
        }
    }
}

fn run<T: OtlpRequest>(format: Format, coding: Coding, bytes: &[u8]) {
    let limits = IngestLimits::default();
    let admission = Admission::new(256 << 20, 1, std::time::Duration::from_secs(1));
    let mut reservation = admission.reservation();
    if reservation.grow(bytes.len() as u64, "body").is_err() {
        return;
    }
    let limits_max_bytes = 16 << 20;
    let at = DecodeLimits {
        max_bytes: limits_max_bytes,
        limits: &limits,
        reservation: &mut reservation,
        cancelled: &|| false,
    };
    let Ok(mut request) = decode_body::<T>(Bytes::copy_from_slice(bytes), format, coding, at)
    else {
        return;
    };
    if format == Format::Protobuf && coding == Coding::Identity {
        let shape = scan_protobuf(bytes, T::SIGNAL, &limits, &|| false)
            .unwrap_or_else(|e| panic!("decoded, but the scan refuses it: {e}"));
        assert!(shape.records >= request.records());
    }
    let received = request.records();
    let rejected = request.reject_invalid(&limits);
    assert_eq!(received - rejected.records, request.records());
    // What is left is valid: the leader's check of a forwarded write
    // accepts it, labelled.
    assert_eq!(request.reject_invalid(&limits), Default::default());
    request.label_resources("otelraft.node", "fuzz");
    let payload = request.encode_to_vec();
    if request.records() > 0 && payload.len() <= limits_max_bytes {
        assert_eq!(
            check_encoded(
                T::SIGNAL,
                &payload,
                request.records(),
                limits_max_bytes,
                &limits
            ),
            Ok(())
        );
    }
}
