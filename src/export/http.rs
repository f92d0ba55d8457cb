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
            _ => truncate(resp.text().await.unwrap_or_default()),
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

    /// GETs `url` with `query` and decodes JSON; for read-backs.
    pub async fn get_json(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, ExportError> {
        let resp = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .query(query)
            .send()
            .await
            .map_err(|e| self.unavailable(e, None))?;
        let status = resp.status();
        if !status.is_success() {
            let text = truncate(resp.text().await.unwrap_or_default());
            return Err(ExportError::Unavailable {
                sink: self.sink.clone(),
                message: format!("GET {url}: HTTP {}: {text}", status.as_u16()),
                retry_after: None,
            });
        }
        resp.json().await.map_err(|e| ExportError::Protocol {
            sink: self.sink.clone(),
            message: format!("GET {url}: {e}"),
        })
    }

    fn unavailable(&self, e: reqwest::Error, retry_after: Option<Duration>) -> ExportError {
        ExportError::Unavailable {
            sink: self.sink.clone(),
            message: e.to_string(),
            retry_after,
        }
    }
}

fn truncate(mut s: String) -> String {
    if let Some((cut, _)) = s.char_indices().nth(MAX_BODY_CHARS) {
        s.truncate(cut);
    }
    s.trim().to_string()
}
