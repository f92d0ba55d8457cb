//! The HTTP client every sink sends through: one pooled `reqwest::Client`
//! per sink, the configured headers, a per-request timeout, and the
//! classification of the answer by a [`RetryPolicy`].

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::retry::{parse_retry_after, HttpRetryPolicy, RetryPolicy, Verdict};
use super::ExportError;
use crate::config::sink::{sink_authorization, sink_roots, SinkConfig};

/// Longest part of a refusal body kept for logs and dead letters.
const MAX_BODY_CHARS: usize = 512;
/// Most of a refusal body read off the wire; the rest is never read.
const MAX_REFUSAL_READ_BYTES: usize = 4096;
/// Largest read-back (query API) response accepted.
pub use crate::config::memory::MAX_QUERY_RESPONSE_BYTES;

/// How a sink answered one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx.
    Accepted,
    /// A non-retryable refusal: the request must not be resent as it is.
    Refused {
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        message: String,
    },
}

/// A sink's HTTP endpoint.
#[derive(Clone)]
pub struct HttpService {
    sink: String,
    client: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
    policy: HttpRetryPolicy,
}

impl HttpService {
    /// A client for sink `name`.
    pub fn new(name: &str, config: &SinkConfig) -> Result<Self, ExportError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(ExportError::Encode(format!(
                    "sinks.{name}.headers.{k} is invalid"
                )));
            };
            headers.insert(k, v);
        }
        let prefix = format!("sinks.{name}");
        let secret_error = |e: crate::config::ConfigError| ExportError::Encode(e.to_string());
        if let Some(value) = sink_authorization(config, &prefix).map_err(secret_error)? {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ExportError::Encode(format!(
                    "{prefix}: the credential is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)));
        let builder = match sink_roots(config, &prefix).map_err(secret_error)? {
            Some(roots) => builder.tls_certs_only(roots),
            None => builder,
        };
        let client = builder
            .build()
            .map_err(|e| ExportError::Encode(format!("http client: {e}")))?;
        Ok(HttpService {
            sink: name.to_string(),
            client,
            endpoint: config.endpoint.clone(),
            headers,
            policy: HttpRetryPolicy,
        })
    }

    /// Posts `body` once. Retryable failures (transport errors, 5xx, 429)
    /// come back as [`ExportError::Unavailable`]; the caller decides when to
    /// try again.
    pub async fn post(
        &self,
        body: Bytes,
        extra: &[(&'static str, &'static str)],
    ) -> Result<Answer, ExportError> {
        let mut req = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(e, None))?;
        let status = resp.status();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let verdict = self.policy.classify(status, retry_after);
        let text = match verdict {
            Verdict::Done => String::new(),
            _ => refusal_text(resp).await,
        };
        match verdict {
            Verdict::Done => Ok(Answer::Accepted),
            Verdict::Retry { after } => Err(ExportError::Unavailable {
                sink: self.sink.clone(),
                message: format!("HTTP {}: {text}", status.as_u16()),
                retry_after: after,
            }),
            Verdict::Refused => Ok(Answer::Refused {
                status: status.as_u16(),
                message: text,
            }),
        }
    }

    /// GETs `url` with `query` (and the `extra` headers) and decodes JSON;
    /// for read-backs.
    pub async fn get_json(
        &self,
        url: &str,
        query: &[(&str, String)],
        extra: &[(&'static str, &'static str)],
    ) -> Result<serde_json::Value, ExportError> {
        let mut req = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .query(query);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.map_err(|e| self.unavailable(e, None))?;
        let status = resp.status();
        if status.is_client_error() && status.as_u16() != 429 {
            // The query itself is refused (bad range, no read permission):
            // asking again gets the same answer.
            let text = refusal_text(resp).await;
            return Err(ExportError::Protocol {
                sink: self.sink.clone(),
                message: format!("GET {url}: HTTP {}: {text}", status.as_u16()),
            });
        }
        if !status.is_success() {
            let text = refusal_text(resp).await;
            return Err(ExportError::Unavailable {
                sink: self.sink.clone(),
                message: format!("GET {url}: HTTP {}: {text}", status.as_u16()),
                retry_after: None,
            });
        }
        let protocol = |message: String| ExportError::Protocol {
            sink: self.sink.clone(),
            message: format!("GET {url}: {message}"),
        };
        let (body, complete) = read_capped(resp, MAX_QUERY_RESPONSE_BYTES)
            .await
            .map_err(|e| self.unavailable(e, None))?;
        if !complete {
            return Err(protocol(format!(
                "response over {MAX_QUERY_RESPONSE_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| protocol(e.to_string()))
    }

    fn unavailable(&self, e: reqwest::Error, retry_after: Option<Duration>) -> ExportError {
        ExportError::Unavailable {
            sink: self.sink.clone(),
            message: e.to_string(),
            retry_after,
        }
    }
}

/// Reads at most `cap` bytes of a response body; `true` when that was all
/// of it. The rest is never read, so an endless body costs `cap` bytes.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > cap {
            body.extend_from_slice(&chunk[..cap - body.len()]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The start of a refusal's body, for logs and dead letters.
async fn refusal_text(resp: reqwest::Response) -> String {
    match read_capped(resp, MAX_REFUSAL_READ_BYTES).await {
        Ok((body, _)) => truncate(String::from_utf8_lossy(&body).into_owned()),
        Err(_) => String::new(),
    }
}

fn truncate(mut s: String) -> String {
    if let Some((cut, _)) = s.char_indices().nth(MAX_BODY_CHARS) {
        s.truncate(cut);
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that answers `status` with a body that never ends.
    async fn endless_sink(status: u16) -> String {
        use axum::body::Body;
        let app = axum::Router::new().fallback(move || async move {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 << 10]))
            });
            axum::response::Response::builder()
                .status(status)
                .body(Body::from_stream(chunks))
                .expect("response")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    fn service(endpoint: &str) -> HttpService {
        let config: SinkConfig = toml::from_str(&format!(
            "kind = \"prometheus_remote_write\"\nendpoint = \"{endpoint}\"\ntimeout_ms = 600000\n"
        ))
        .unwrap();
        HttpService::new("s", &config).unwrap()
    }

    #[tokio::test]
    async fn an_endless_refusal_body_is_read_only_as_far_as_it_is_quoted() {
        let endpoint = endless_sink(400).await;
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            service(&endpoint).post(Bytes::from_static(b"x"), &[]),
        )
        .await
        .expect("answered long before the sink's timeout")
        .unwrap();
        match answer {
            Answer::Refused { status, message } => {
                assert_eq!(status, 400);
                assert_eq!(message.len(), MAX_BODY_CHARS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_endless_read_back_is_refused_at_its_cap() {
        let endpoint = endless_sink(200).await;
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            service(&endpoint).get_json(&endpoint, &[], &[]),
        )
        .await
        .expect("answered long before the sink's timeout")
        .unwrap_err();
        assert!(err.to_string().contains("response over"), "{err}");
    }
}
