//! The recording sinks the checker reads: a recording proxy in front of the
//! real Prometheus, and the strict Loki receiver from the test suite.
//!
//! Both run on the sinks namespace's runtime. The Prometheus proxy forwards
//! every request (remote write and the exporters' marker queries) unchanged
//! and records a write's samples only when Prometheus accepted it, so what it
//! records is what Prometheus stores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use otelraft::pb::prometheus::WriteRequest;
use prost::Message;

/// The label that carries a record id on the workload's metric points.
pub const ID_LABEL: &str = "jl_id";

/// Samples of one record id that Prometheus accepted.
#[derive(Clone, Debug, Default)]
pub struct Delivered {
    /// Distinct `(timestamp, value bits)` pairs: each is one point a user
    /// would see in Prometheus. More than one is a duplicate.
    pub points: Vec<(i64, u64)>,
    /// Accepted requests that carried the record, repeats included. A repeat
    /// of an identical sample is absorbed by Prometheus (not a duplicate).
    pub deliveries: u64,
}

#[derive(Default)]
struct Recorded {
    by_id: HashMap<String, Delivered>,
    writes_accepted: u64,
    writes_refused: u64,
}

/// The recording proxy's shared state.
#[derive(Clone)]
pub struct PromRecorder {
    upstream: String,
    client: reqwest::Client,
    recorded: Arc<Mutex<Recorded>>,
}

/// What the Prometheus proxy recorded, for the checker.
pub struct PromRecord {
    /// Per record id.
    pub by_id: HashMap<String, Delivered>,
    /// Remote-write requests Prometheus accepted.
    pub writes_accepted: u64,
    /// Remote-write requests it refused (the exporter retries or settles).
    pub writes_refused: u64,
}

impl PromRecorder {
    /// Serves on `listener`, forwarding to `upstream` (`http://host:port`).
    /// Must run on the sinks namespace's runtime.
    pub async fn start(listener: tokio::net::TcpListener, upstream: String) -> PromRecorder {
        let rec = PromRecorder {
            upstream,
            client: reqwest::Client::new(),
            recorded: Arc::new(Mutex::new(Recorded::default())),
        };
        let app = Router::new().fallback(forward).with_state(rec.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        rec
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> PromRecord {
        let r = self.lock();
        PromRecord {
            by_id: r.by_id.clone(),
            writes_accepted: r.writes_accepted,
            writes_refused: r.writes_refused,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, write: &WriteRequest) {
        let mut r = self.lock();
        r.writes_accepted += 1;
        for ts in &write.timeseries {
            let Some(id) = ts.labels.iter().find(|l| l.name == ID_LABEL) else {
                continue;
            };
            let d = r.by_id.entry(id.value.clone()).or_default();
            for s in &ts.samples {
                d.deliveries += 1;
                let point = (s.timestamp, s.value.to_bits());
                if !d.points.contains(&point) {
                    d.points.push(point);
                }
            }
        }
    }
}

/// Forwards any request; records accepted remote writes.
///
/// Once the body is read, forwarding and recording run in their own task:
/// if the exporter's connection drops (its leader killed, its timeout hit)
/// hyper cancels this handler, but a write Prometheus stored must still be
/// recorded, or the checker would report it lost.
async fn forward(
    State(rec): State<PromRecorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), 256 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match tokio::spawn(forward_and_record(rec, method, uri, headers, body)).await {
        Ok(response) => response,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn forward_and_record(
    rec: PromRecorder,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let is_write = method == Method::POST && uri.path() == "/api/v1/write";
    // A write the proxy cannot decode is refused before Prometheus sees it:
    // the harness must know every sample it lets through.
    let write = if is_write {
        match decode_write(&body) {
            Ok(w) => Some(w),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    } else {
        None
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", rec.upstream);
    let mut out = rec.client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let resp_headers = resp.headers().clone();
    let resp_body = resp.bytes().await.unwrap_or_default();
    if let Some(w) = write {
        if status.is_success() {
            rec.record(&w);
        } else {
            rec.lock().writes_refused += 1;
        }
    }
    let mut response = (status, resp_body).into_response();
    if let Some(ct) = resp_headers.get("content-type") {
        response.headers_mut().insert("content-type", ct.clone());
    }
    response
}

/// Decodes a remote-write body: block snappy, then protobuf.
fn decode_write(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// The socket address the sinks listen on for `port`.
pub fn sink_addr(port: u16) -> SocketAddr {
    SocketAddr::from((crate::topology::ip(crate::topology::SINKS.1), port))
}
