//! A strict, in-process Loki receiver for integration tests and for the
//! jepsen-like harness's checker.
//!
//! It serves Loki's push endpoint (`POST /loki/api/v1/push`, block-snappy
//! protobuf or JSON) and Loki 3's OTLP endpoint (`POST /otlp/v1/logs`),
//! applies Loki's duplicate detection, and records every entry it keeps and
//! every request it refuses, so tests can assert exactly-once delivery.
//!
//! It is stricter than Loki on purpose: a request with anything malformed
//! in it is refused whole (Loki may keep the valid part), so an exporter bug
//! cannot hide behind partial success. OTLP labels and metadata come from
//! `otelraft::export::loki::request`, the same helpers the push sink uses,
//! so both sinks' output can be compared line for line.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use otelraft::export::loki::request::{
    body_text, format_labels, is_valid_label_name, record_metadata, scope_metadata, split_resource,
};
use otelraft::pb::loki::PushRequest;
use prost::Message;
use serde_json::Value;

use decode::{decode_push, parse_labels};

pub mod decode;
pub mod query;

/// Loki's `chunk_block_size`: how much a stream's head block holds before
/// it is cut, and so how far back Loki's duplicate detection reaches.
pub const HEAD_BLOCK_BYTES: usize = 256 << 10;

/// Largest request body accepted (compressed), like Loki's server limit.
const MAX_BODY_BYTES: usize = 64 << 20;

/// One log entry the receiver kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredLine {
    /// The stream selector, normalised (names sorted, canonical escaping).
    pub labels: String,
    /// Unix nanoseconds.
    pub timestamp_nanos: i128,
    /// The log line.
    pub line: String,
    /// Structured metadata in the order it arrived.
    pub metadata: Vec<(String, String)>,
}

impl StoredLine {
    /// The value of metadata `name`, if present.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Counters of what the receiver saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Requests accepted (204 on push, 200 on OTLP).
    pub requests_ok: u64,
    /// Requests refused as malformed (4xx).
    pub requests_rejected: u64,
    /// `(status, reason)` of every refused request, in arrival order.
    pub rejections: Vec<(u16, String)>,
    /// Requests answered 503 while the receiver was set unavailable.
    pub requests_unavailable: u64,
    /// Entries in accepted requests, duplicates included.
    pub entries_received: u64,
    /// Entries dropped as duplicates of an entry in their stream's head
    /// block.
    pub duplicates_dropped: u64,
    /// Entries stored although an identical one was stored before (it had
    /// left the head block): a duplicate real Loki would keep.
    pub duplicates_stored: u64,
    /// Query API requests answered.
    pub queries: u64,
}

impl StoredLine {
    /// Bytes the entry takes in a head block.
    fn head_bytes(&self) -> usize {
        self.line.len()
            + 16
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// A stream's head block: the entries Loki compares a new one against.
#[derive(Default)]
struct Head {
    entries: HashSet<StoredLine>,
    bytes: usize,
}

#[derive(Default)]
struct Store {
    lines: Vec<StoredLine>,
    seen: HashSet<StoredLine>,
    heads: HashMap<String, Head>,
    stats: ReceiverStats,
}

struct Shared {
    store: Mutex<Store>,
    down: AtomicBool,
    /// How long an accepted push waits, after storing, before it answers.
    answer_delay_ms: AtomicU64,
    /// Queries answered 403, as with a write-only credential.
    queries_refused: AtomicBool,
}

impl Shared {
    async fn delay_answer(&self) {
        let ms = self.answer_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide what was received.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running receiver; clones share the same server and records.
#[derive(Clone)]
pub struct LokiReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    scheme: &'static str,
}

impl LokiReceiver {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime until the
    /// runtime shuts down.
    pub async fn start() -> LokiReceiver {
        Self::start_on("127.0.0.1:0").await
    }

    /// Binds `addr` (the jepsen-like harness binds its sinks' address) and
    /// serves on the current tokio runtime until the runtime shuts down.
    pub async fn start_on(addr: &str) -> LokiReceiver {
        Self::serve(addr, None, None).await
    }

    /// An https receiver on 127.0.0.1:0 (certificate from `tls`) that
    /// answers 401 to any request whose `Authorization` is not `required`.
    pub async fn start_tls(tls: Arc<otelraft::tls::ServerTls>, required: &str) -> LokiReceiver {
        Self::serve("127.0.0.1:0", Some(tls), Some(required.to_string())).await
    }

    async fn serve(
        addr: &str,
        tls: Option<Arc<otelraft::tls::ServerTls>>,
        required: Option<String>,
    ) -> LokiReceiver {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            down: AtomicBool::new(false),
            answer_delay_ms: AtomicU64::new(0),
            queries_refused: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .route("/otlp/v1/logs", post(otlp_logs))
            .route("/loki/api/v1/query_range", get(query_range))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(shared.clone());
        let app = match required {
            Some(required) => app.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let required = required.clone();
                    async move {
                        let given = request.headers().get("authorization").cloned();
                        if given.as_ref().map(|v| v.as_bytes()) == Some(required.as_bytes()) {
                            next.run(request).await
                        } else {
                            StatusCode::UNAUTHORIZED.into_response()
                        }
                    }
                },
            )),
            None => app,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind loki receiver");
        let addr = listener.local_addr().expect("loki receiver address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let incoming = otelraft::tls::Incoming::new(
            listener,
            otelraft::tls::Listener::OtlpHttp,
            tls,
            otelraft::tls::ConnLimits::default(),
        )
        .expect("loki receiver listener");
        tokio::spawn(async move {
            let _ = axum::serve(incoming, app).await;
        });
        LokiReceiver {
            addr,
            shared,
            scheme,
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`LokiReceiver::start_tls`]).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The push API URL.
    pub fn push_url(&self) -> String {
        format!("{}/loki/api/v1/push", self.base_url())
    }

    /// Loki 3's OTLP logs URL.
    pub fn otlp_url(&self) -> String {
        format!("{}/otlp/v1/logs", self.base_url())
    }

    /// Entries kept after duplicate detection, in arrival order.
    pub fn stored(&self) -> Vec<StoredLine> {
        self.shared.lock().lines.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ReceiverStats {
        self.shared.lock().stats.clone()
    }

    /// Pushes are stored at once but answered only after `delay`: a client
    /// whose timeout is shorter sees a failure for a request Loki holds.
    pub fn set_answer_delay(&self, delay: std::time::Duration) {
        self.shared
            .answer_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// While `refused`, the query API answers 403, as Loki does to a
    /// credential that may push but not read.
    pub fn set_queries_refused(&self, refused: bool) {
        self.shared.queries_refused.store(refused, Ordering::SeqCst);
    }

    /// While `down`, every request is answered 503 and nothing is stored.
    pub fn set_unavailable(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

/// A refusal: status and the reason sent as the body.
type Refusal = (StatusCode, String);

fn bad_request(reason: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, reason.into())
}

async fn push(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = handle(
        &shared,
        || parse_push(&headers, &body),
        || StatusCode::NO_CONTENT.into_response(),
    );
    shared.delay_answer().await;
    answer
}

async fn otlp_logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = handle(
        &shared,
        || parse_otlp(&headers, &body),
        || {
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportLogsServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        },
    );
    shared.delay_answer().await;
    answer
}

/// The common path: outage check, parse, then store and answer `success`,
/// or record the refusal and answer with it. Parsing happens only when up,
/// so a request during an outage leaves no trace but the 503 count.
fn handle(
    shared: &Shared,
    parse: impl FnOnce() -> Result<Vec<StoredLine>, Refusal>,
    success: impl FnOnce() -> Response,
) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        shared.lock().stats.requests_unavailable += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "receiver is down").into_response();
    }
    match parse() {
        Ok(lines) => {
            store_lines(&mut shared.lock(), lines);
            success()
        }
        Err((status, reason)) => {
            let mut store = shared.lock();
            store.stats.requests_rejected += 1;
            store
                .stats
                .rejections
                .push((status.as_u16(), reason.clone()));
            (status, reason).into_response()
        }
    }
}

/// A push API request: block-snappy protobuf or JSON.
fn parse_push(headers: &HeaderMap, body: &[u8]) -> Result<Vec<StoredLine>, Refusal> {
    reject_content_encoding(headers)?;
    match content_type(headers).as_deref() {
        Some("application/x-protobuf") => {
            let req = decode_push(body).map_err(|e| bad_request(e.to_string()))?;
            push_lines(&req)
        }
        Some("application/json") => json_push_lines(body),
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {other:?} for the push API"),
        )),
    }
}

/// An OTLP logs request: protobuf, optionally gzipped.
fn parse_otlp(headers: &HeaderMap, body: &[u8]) -> Result<Vec<StoredLine>, Refusal> {
    if content_type(headers).as_deref() != Some("application/x-protobuf") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the OTLP endpoint takes Content-Type application/x-protobuf".to_string(),
        ));
    }
    let raw = decoded_body(headers, body)?;
    let req = ExportLogsServiceRequest::decode(raw.as_slice())
        .map_err(|e| bad_request(format!("body is not an ExportLogsServiceRequest: {e}")))?;
    otlp_lines(&req)
}

/// Loki's duplicate detection: an entry equal in stream, timestamp, line
/// and metadata to one in its stream's head block is dropped; see the
/// module docs.
fn store_lines(store: &mut Store, lines: Vec<StoredLine>) {
    store.stats.requests_ok += 1;
    for line in lines {
        store.stats.entries_received += 1;
        let head = store.heads.entry(line.labels.clone()).or_default();
        if head.entries.contains(&line) {
            store.stats.duplicates_dropped += 1;
            continue;
        }
        if head.bytes >= HEAD_BLOCK_BYTES {
            *head = Head::default();
        }
        head.bytes += line.head_bytes();
        head.entries.insert(line.clone());
        if !store.seen.insert(line.clone()) {
            store.stats.duplicates_stored += 1;
        }
        store.lines.push(line);
    }
}

/// `GET /loki/api/v1/query_range`: the subset in [`query`].
async fn query_range(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        shared.lock().stats.requests_unavailable += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "receiver is down").into_response();
    }
    if shared.queries_refused.load(Ordering::SeqCst) {
        return (StatusCode::FORBIDDEN, "no read permission").into_response();
    }
    let pairs: Vec<(String, String)> =
        reqwest::Url::parse(&format!("http://x/?{}", raw.unwrap_or_default()))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
    let categorize = headers
        .get("x-loki-response-encoding-flags")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|f| f.trim() == "categorize-labels"));
    match query::Params::parse(&pairs, categorize) {
        Ok(params) => {
            let mut store = shared.lock();
            store.stats.queries += 1;
            let doc = params.answer(&store.lines);
            (StatusCode::OK, axum::Json(doc)).into_response()
        }
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default();
    Some(media.trim().to_ascii_lowercase())
}

fn content_encoding(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_ascii_lowercase()))
            .map_err(|_| bad_request("unreadable Content-Encoding")),
    }
}

/// The push API body is snappy (protobuf) or plain JSON here; any other
/// encoding is refused.
fn reject_content_encoding(headers: &HeaderMap) -> Result<(), Refusal> {
    match content_encoding(headers)?.as_deref() {
        None | Some("identity") => Ok(()),
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?} on the push API"),
        )),
    }
}

/// The OTLP body, gunzipped when `Content-Encoding: gzip`.
fn decoded_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    match content_encoding(headers)?.as_deref() {
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad_request(format!("bad gzip body: {e}")))?;
            if out.len() > MAX_BODY_BYTES {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "gunzipped body too large".into(),
                ));
            }
            Ok(out)
        }
        Some(other) => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}"),
        )),
    }
}

/// Validates a protobuf push request whole and returns its entries.
fn push_lines(req: &PushRequest) -> Result<Vec<StoredLine>, Refusal> {
    let mut out = Vec::new();
    for (s, stream) in req.streams.iter().enumerate() {
        let labels = normalised_labels(&stream.labels)
            .map_err(|e| bad_request(format!("stream {s}: {e}")))?;
        for (i, entry) in stream.entries.iter().enumerate() {
            let at = |what: String| bad_request(format!("stream {s} {labels} entry {i}: {what}"));
            let ts = entry
                .timestamp
                .as_ref()
                .ok_or_else(|| at("entry has no timestamp".into()))?;
            let timestamp_nanos = timestamp_nanos(ts.seconds, ts.nanos).map_err(at)?;
            let metadata: Vec<(String, String)> = entry
                .structured_metadata
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect();
            check_metadata(&metadata).map_err(at)?;
            out.push(StoredLine {
                labels: labels.clone(),
                timestamp_nanos,
                line: entry.line.clone(),
                metadata,
            });
        }
    }
    Ok(out)
}

fn normalised_labels(selector: &str) -> Result<String, String> {
    let labels = parse_labels(selector).map_err(|e| format!("labels {selector:?}: {e}"))?;
    Ok(format_labels(&labels))
}

fn timestamp_nanos(seconds: i64, nanos: i32) -> Result<i128, String> {
    if seconds < 0 || nanos < 0 {
        return Err(format!("negative timestamp {seconds}s {nanos}ns"));
    }
    if nanos >= 1_000_000_000 {
        return Err(format!("timestamp nanos {nanos} out of range"));
    }
    Ok(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

fn check_metadata(metadata: &[(String, String)]) -> Result<(), String> {
    for (name, _) in metadata {
        if !is_valid_label_name(name) {
            return Err(format!("invalid structured metadata name {name:?}"));
        }
    }
    Ok(())
}

/// Loki's JSON push format, strictly:
/// `{"streams":[{"stream":{..},"values":[["<ns>","line"(,{metadata})]]}]}`.
fn json_push_lines(body: &[u8]) -> Result<Vec<StoredLine>, Refusal> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("bad JSON: {e}")))?;
    let top = only_keys(&doc, &["streams"], "body").map_err(bad_request)?;
    let streams = top
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("\"streams\" must be an array"))?;
    let mut out = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        json_stream(stream, &mut out).map_err(|e| bad_request(format!("stream {s}: {e}")))?;
    }
    Ok(out)
}

fn json_stream(stream: &Value, out: &mut Vec<StoredLine>) -> Result<(), String> {
    let obj = only_keys(stream, &["stream", "values"], "stream")?;
    let labels = string_pairs(obj.get("stream"), "labels")?;
    let mut seen = HashSet::new();
    for (name, value) in &labels {
        if !is_valid_label_name(name) || value.is_empty() || !seen.insert(name) {
            return Err(format!("invalid label {name:?}={value:?}"));
        }
    }
    if labels.is_empty() {
        return Err("stream has no labels".into());
    }
    let labels = format_labels(&labels);
    let values = obj
        .get("values")
        .and_then(Value::as_array)
        .ok_or("\"values\" must be an array")?;
    for (i, v) in values.iter().enumerate() {
        let line = json_entry(&labels, v).map_err(|e| format!("entry {i}: {e}"))?;
        out.push(line);
    }
    Ok(())
}

fn json_entry(labels: &str, v: &Value) -> Result<StoredLine, String> {
    let parts = v.as_array().ok_or("entry must be an array")?;
    if !(2..=3).contains(&parts.len()) {
        return Err("entry must be [ts, line] or [ts, line, metadata]".into());
    }
    let ts = parts[0].as_str().ok_or("timestamp must be a string")?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "timestamp {ts:?} is not non-negative decimal nanoseconds"
        ));
    }
    let timestamp_nanos = ts
        .parse::<i64>()
        .map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    let line = parts[1]
        .as_str()
        .ok_or("line must be a string")?
        .to_string();
    let metadata = match parts.get(2) {
        None => Vec::new(),
        Some(m) => string_pairs(Some(m), "structured metadata")?,
    };
    check_metadata(&metadata)?;
    Ok(StoredLine {
        labels: labels.to_string(),
        timestamp_nanos: i128::from(timestamp_nanos),
        line,
        metadata,
    })
}

fn only_keys<'a>(
    v: &'a Value,
    allowed: &[&str],
    what: &str,
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let obj = v.as_object().ok_or(format!("{what} must be an object"))?;
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?} in {what}"));
    }
    Ok(obj)
}

fn string_pairs(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or(format!("{what} must be an object"))?;
    obj.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(format!("{what} value of {k:?} must be a string")),
        })
        .collect()
}

/// The entries of an OTLP request, mapped the way Loki 3 maps them (and the
/// way the push sink does): promoted resource attributes as labels; other
/// resource attributes, scope, record attributes, severity and trace context
/// as metadata; body as line. A record with neither time nor observed time
/// is refused: Loki would stamp it on arrival, making resends non-idempotent.
fn otlp_lines(req: &ExportLogsServiceRequest) -> Result<Vec<StoredLine>, Refusal> {
    let mut out = Vec::new();
    for (r, resource_logs) in req.resource_logs.iter().enumerate() {
        let attrs = resource_logs
            .resource
            .as_ref()
            .map(|res| res.attributes.as_slice())
            .unwrap_or(&[]);
        let split = split_resource(attrs);
        let labels = format_labels(&split.labels);
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let mut prefix = split.metadata.clone();
            prefix.extend(scope_metadata(scope_logs.scope.as_ref()));
            for (i, record) in scope_logs.log_records.iter().enumerate() {
                let time = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                if time == 0 {
                    return Err(bad_request(format!(
                        "resource_logs {r} scope_logs {s} record {i}: no time and no observed time"
                    )));
                }
                out.push(StoredLine {
                    labels: labels.clone(),
                    timestamp_nanos: i128::from(time),
                    line: body_text(record),
                    metadata: record_metadata(&prefix, record),
                });
            }
        }
    }
    Ok(out)
}
