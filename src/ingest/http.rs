//! OTLP/HTTP receiver: `POST /v1/logs`, `/v1/metrics`, `/v1/traces`.
//!
//! Answers follow OTLP/HTTP: 200 with an `Export*ServiceResponse` in the
//! request's encoding (empty, or its `partial_success` when some items were
//! refused); errors carry a `google.rpc.Status` body in the
//! request's encoding (JSON when the content type itself was refused), and
//! retryable errors (429/503) carry `Retry-After`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tracing::info;

use super::admission::Reservation;
use super::decode::{Coding, Format};
use super::error::retry_secs;
use super::pipeline::Accepted;
use super::request::OtlpRequest;
use super::rpc_status::RpcStatus;
use super::{Ingest, IngestError, SubmitError};
use crate::tls::{ConnInfo, WorkSlots};

/// Serves OTLP/HTTP on `listener` (plain or TLS) until `shutdown`
/// resolves, then lets in-flight requests finish. Taking a bound listener
/// lets tests bind port 0.
pub async fn serve_http(
    listener: crate::tls::Incoming,
    ingest: Arc<Ingest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError> {
    let local = listener.local_addr();
    info!(%local, "OTLP/HTTP receiver listening");
    let connections = ingest.settings.connections.clone();
    crate::tls::serve_http(listener, http_router(ingest), &connections, shutdown).await?;
    Ok(())
}

/// The OTLP/HTTP routes, without a listener, so tests and embedding servers
/// can mount or drive them directly.
pub fn http_router(ingest: Arc<Ingest>) -> Router {
    let limit = axum::middleware::from_fn_with_state(ingest.clone(), limit_duration);
    Router::new()
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .layer(limit)
        .with_state(ingest)
}

/// Answers a request that outlives `connections.request_timeout_ms` with
/// 503 and a retry hint; the request may still commit, as after a commit
/// timeout.
async fn limit_duration(
    State(ingest): State<Arc<Ingest>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = ingest.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error = IngestError::Submit(SubmitError::Internal(format!(
                "the request took longer than connections.request_timeout_ms ({} ms); its outcome is unknown",
                limit.as_millis()
            )));
            error_response(&error, Format::Json)
        }
    }
}

async fn export<T: OtlpRequest>(
    State(ingest): State<Arc<Ingest>>,
    connection: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = match header(&headers, CONTENT_TYPE).and_then(Format::from_content_type) {
        Ok(format) => format,
        Err(e) => return error_response(&ingest.refuse(T::SIGNAL, 0, e), Format::Json),
    };
    // Before the body is read: an unauthenticated client gets nothing in.
    if let Err(e) = ingest.authorize(headers.get(AUTHORIZATION).map(|v| v.as_bytes())) {
        let mut response = error_response(&ingest.refuse(T::SIGNAL, 0, e), format);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let connection = connection.map(|Extension(info)| info.work);
    let received = receive::<T>(&ingest, &headers, format, connection.as_ref(), body).await;
    let (request, reservation) = match received {
        Ok(decoded) => decoded,
        Err(e) => return error_response(&ingest.refuse(T::SIGNAL, 0, e), format),
    };
    match ingest.accept(request, reservation, started).await {
        Ok(accepted) => success::<T>(&accepted, format),
        Err(e) => error_response(&e, format),
    }
}

/// Reads the body under the decode budget and decodes it within
/// `max_request_bytes`.
async fn receive<T: OtlpRequest>(
    ingest: &Ingest,
    headers: &HeaderMap,
    format: Format,
    connection: Option<&WorkSlots>,
    body: Body,
) -> Result<(T, Reservation), IngestError> {
    let coding = Coding::from_content_encoding(header(headers, CONTENT_ENCODING)?)?;
    let limit = ingest.settings.max_request_bytes;
    let declared = header(headers, CONTENT_LENGTH)?.and_then(|v| v.trim().parse::<u64>().ok());
    let mut reservation = ingest.admission.reservation();
    let deadline = ingest.settings.body_timeout;
    let raw = read_body(body, declared, limit, deadline, &mut reservation).await?;
    ingest
        .decode::<T>(raw, format, coding, connection, reservation)
        .await
}

/// Collects the raw body within `deadline`, refusing as soon as it passes
/// `limit` (and before reading anything when `Content-Length` already says
/// so). Each chunk is reserved before it is kept.
pub(crate) async fn read_body(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    deadline: std::time::Duration,
    reservation: &mut Reservation,
) -> Result<Bytes, IngestError> {
    tokio::time::timeout(deadline, read_all(body, declared, limit, reservation))
        .await
        .map_err(|_| {
            IngestError::Body(format!(
                "the body did not arrive within connections.body_timeout_ms ({} ms)",
                deadline.as_millis()
            ))
        })?
}

async fn read_all(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let too_large = || IngestError::TooLarge {
        stage: "body",
        limit,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| n as usize);
    reservation.grow(capacity as u64, "body")?;
    let mut buf = Vec::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| IngestError::Body(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if buf.len() + chunk.len() > buf.capacity() {
            let target = (buf.capacity() * 2).max(buf.len() + chunk.len()).min(limit);
            reservation.grow((target - buf.capacity()) as u64, "body")?;
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A header as text; a non-UTF-8 value for a header we interpret is refused.
fn header(headers: &HeaderMap, name: HeaderName) -> Result<Option<&str>, IngestError> {
    match headers.get(&name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            IngestError::UnsupportedMediaType(format!("{name} header is not valid text"))
        }),
    }
}

/// 200 with the `Export*ServiceResponse`: empty when everything was
/// accepted (zero bytes in protobuf, `{}` in JSON), else its
/// `partial_success`.
fn success<T: OtlpRequest>(accepted: &Accepted, format: Format) -> Response {
    let body = match (format, &accepted.partial) {
        (Format::Protobuf, _) => Bytes::from(accepted.response::<T>().encode_to_vec()),
        (Format::Json, None) => Bytes::from_static(b"{}"),
        (Format::Json, Some(p)) => {
            Bytes::from(T::partial_success_json(p.rejected, &p.message).to_string())
        }
    };
    (
        StatusCode::OK,
        [(CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// The HTTP status OTLP/HTTP clients act on: 429/503 are retried (after
/// `Retry-After`), 400/413/415 are dropped.
fn http_status(error: &IngestError) -> StatusCode {
    match error {
        IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IngestError::TooLarge { .. }
        | IngestError::OverBudget { .. }
        | IngestError::Submit(SubmitError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
        IngestError::Decode { .. }
        | IngestError::Invalid(_)
        | IngestError::Body(_)
        | IngestError::Submit(SubmitError::Invalid(_)) => StatusCode::BAD_REQUEST,
        IngestError::Unauthorized(e) if e.forbidden() => StatusCode::FORBIDDEN,
        IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        IngestError::Submit(SubmitError::Overloaded { .. }) => StatusCode::TOO_MANY_REQUESTS,
        IngestError::Submit(_) | IngestError::Io(_) | IngestError::Transport(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn error_response(error: &IngestError, format: Format) -> Response {
    let code = error.grpc_code();
    let message = error.short_text();
    let body = match format {
        Format::Protobuf => Bytes::from(RpcStatus::new(code, message).encode_to_vec()),
        Format::Json => {
            Bytes::from(serde_json::json!({ "code": code as i32, "message": message }).to_string())
        }
    };
    let mut response = (
        http_status(error),
        [(CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if let Some(delay) = error.retry_after().filter(|_| error.retryable()) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_secs(delay)));
    }
    // A draining node closes its listener soon: the client must not keep this
    // connection for its next request, which the closing server would never
    // read (the client would see the connection drop with no answer).
    if matches!(error, IngestError::Submit(SubmitError::ShuttingDown)) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
