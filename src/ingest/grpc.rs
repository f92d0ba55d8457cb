//! OTLP/gRPC receiver: the three collector services on one tonic server.
//!
//! tonic only frames: the body is read under the decode budget, gunzipped
//! and decoded by our code on the blocking pool (`raw`), so no decode runs
//! on the executor that runs Raft. Everything after decoding is the shared
//! pipeline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::{Code, Status};
use tracing::info;

use super::error::retry_secs;
use super::rpc_status::RpcStatus;
use super::{Ingest, IngestError};
use crate::pb::log::Signal;

mod raw;

/// Serves OTLP/gRPC (logs, metrics, traces) on `listener` (plain or TLS)
/// until `shutdown` resolves, then drains in-flight calls. Taking a bound
/// listener lets tests bind port 0.
pub async fn serve_grpc(
    listener: crate::tls::Incoming,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError> {
    let local = listener.local_addr();
    info!(%local, "OTLP/gRPC receiver listening");
    let c = &ingest.settings.connections;
    Server::builder()
        .timeout(c.request_timeout())
        .max_concurrent_streams(Some(c.max_streams_per_connection))
        .http2_keepalive_interval(Some(c.keepalive_interval()))
        .http2_keepalive_timeout(Some(c.keepalive_interval()))
        .serve_with_incoming_shutdown(grpc_routes(ingest), listener.into_stream(), shutdown)
        .await?;
    Ok(())
}

/// The three services. Each call is admitted first (`raw::admit`: body
/// read under the decode budget, gzip taken over from tonic), then tonic
/// frames it and hands the message bytes to `raw::Export`, which decodes
/// them on the blocking pool.
fn grpc_routes(ingest: Arc<Ingest>) -> Routes {
    let auth = axum::middleware::from_fn_with_state(ingest.clone(), authorize);
    let admit = axum::middleware::from_fn_with_state(ingest.clone(), raw::admit);
    let router = axum::Router::new()
        .route_service(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            raw::Export::<ExportLogsServiceRequest>::new(ingest.clone()),
        )
        .route_service(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            raw::Export::<ExportMetricsServiceRequest>::new(ingest.clone()),
        )
        .route_service(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            raw::Export::<ExportTraceServiceRequest>::new(ingest),
        )
        .fallback(|| async {
            Status::unimplemented("unknown method").into_http::<axum::body::Body>()
        })
        .layer(axum::middleware::map_response(remap_decode_status))
        .layer(admit)
        .layer(auth);
    Routes::from(router).prepare()
}

/// The signal a call's path names.
pub(crate) fn signal_of(path: &str) -> Signal {
    if path.contains(".metrics.") {
        Signal::Metrics
    } else if path.contains(".trace.") {
        Signal::Traces
    } else {
        Signal::Logs
    }
}

/// Refuses a call without an ingest token (UNAUTHENTICATED, or
/// PERMISSION_DENIED for an admin token) before tonic reads its body.
async fn authorize(
    axum::extract::State(ingest): axum::extract::State<Arc<Ingest>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match ingest.authorize(header) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            let signal = signal_of(request.uri().path());
            to_status(&ingest.refuse(signal, 0, e)).into_http()
        }
    }
}

/// Corrects the codes tonic uses when a request fails before reaching our
/// handlers:
/// - OUT_OF_RANGE (message over `max_decoding_message_size`) becomes
///   RESOURCE_EXHAUSTED: OTLP clients retry OUT_OF_RANGE, and resending an
///   oversized request can never succeed.
/// - INTERNAL (undecodable protobuf, corrupt gzip, truncated frame) becomes
///   INVALID_ARGUMENT: OTLP's answer for bad data.
///
/// Such failures are trailers-only responses, so the code is in the headers.
/// Safe because our handlers never answer with either code
/// (`IngestError::grpc_code`).
async fn remap_decode_status(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    let code = match headers.get("grpc-status").map(HeaderValue::as_bytes) {
        Some(b"11") => Code::ResourceExhausted,
        Some(b"13") => Code::InvalidArgument,
        _ => return response,
    };
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    response
}

/// The gRPC status for a refusal. Retryable refusals are UNAVAILABLE with a
/// `google.rpc.RetryInfo` detail and "retry after Ns" in the message.
pub(crate) fn to_status(error: &IngestError) -> Status {
    let code = error.grpc_code();
    let mut message = error.short_text();
    match error.retry_after() {
        Some(delay) if error.retryable() => {
            let secs = retry_secs(delay);
            if !message.contains("retry after") {
                message = format!("{message}; retry after {secs}s");
            }
            let details =
                RpcStatus::new(code, message.clone()).with_retry_info(Duration::from_secs(secs));
            Status::with_details(code, message, details.encode_to_vec().into())
        }
        _ => Status::new(code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::SubmitError;

    #[tokio::test]
    async fn decode_failures_are_remapped_and_others_kept() {
        for (tonic_code, expected) in [
            (Code::OutOfRange, Code::ResourceExhausted),
            (Code::Internal, Code::InvalidArgument),
        ] {
            let response = Status::new(tonic_code, "x").into_http::<axum::body::Body>();
            let response = remap_decode_status(response).await;
            assert_eq!(
                response.headers()["grpc-status"],
                HeaderValue::from(expected as i32)
            );
        }
        let response = Status::unavailable("x").into_http::<axum::body::Body>();
        let response = remap_decode_status(response).await;
        assert_eq!(
            response.headers()["grpc-status"],
            HeaderValue::from(Code::Unavailable as i32)
        );
    }

    #[test]
    fn handler_statuses_never_collide_with_remapped_codes() {
        let errors = [
            IngestError::UnsupportedMediaType("x".into()),
            IngestError::TooLarge {
                stage: "body",
                limit: 1,
            },
            IngestError::Decode {
                format: "protobuf",
                message_type: "X",
                error: "x".into(),
            },
            IngestError::Invalid("x".into()),
            IngestError::Body("x".into()),
            IngestError::Submit(SubmitError::Overloaded {
                reason: "x".into(),
                retry_after: Duration::from_secs(1),
            }),
            IngestError::Submit(SubmitError::NoLeader {
                reason: "x".into(),
                retry_after: Duration::from_secs(1),
            }),
            IngestError::Submit(SubmitError::TooLarge("x".into())),
            IngestError::Submit(SubmitError::ShuttingDown),
            IngestError::Submit(SubmitError::Internal("x".into())),
            IngestError::Io(std::io::Error::other("x")),
        ];
        for error in &errors {
            let code = to_status(error).code();
            assert!(
                !matches!(code, Code::OutOfRange | Code::Internal),
                "{error}: {code:?}"
            );
        }
    }

    #[test]
    fn retryable_status_carries_retry_info_and_hint() {
        let error = IngestError::Submit(SubmitError::ShuttingDown);
        let status = to_status(&error);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("retry after 1s"),
            "{}",
            status.message()
        );
        let details = RpcStatus::decode(status.details()).expect("details decode");
        assert_eq!(details.details.len(), 1);
        assert_eq!(
            details.details[0].type_url,
            crate::ingest::rpc_status::RETRY_INFO_TYPE_URL
        );

        let too_large = to_status(&IngestError::Submit(SubmitError::TooLarge("big".into())));
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        assert!(
            too_large.details().is_empty(),
            "RESOURCE_EXHAUSTED must not carry RetryInfo"
        );
    }
}
