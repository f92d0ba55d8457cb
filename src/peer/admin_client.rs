//! The HTTP client of the admin API: behind `otelraft admin …`, and used by
//! members to call each other (proxied membership calls, join, hand-over).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The JSON body of every admin error.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
}

/// Why an admin call failed on the client side.
/// The largest admin API reply read (status, membership and drain
/// replies are a few kB).
pub const MAX_REPLY_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or the reply not read.
    #[error("cannot reach {endpoint}: {message}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The server answered with an error.
    #[error("{} (HTTP {status})", body.error)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error document.
        body: ErrorBody,
    },
}

impl ClientError {
    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { body, .. } => body.retryable,
        }
    }
}

/// Per-call timeout of membership calls: they wait for catch-up (up to
/// 90 s), and a hand-over may also wait for an election and a transfer.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(300);

/// A client for one node's admin API.
pub struct AdminClient {
    endpoint: String,
    http: reqwest::Client,
    /// The `Authorization` value sent with every call (`Bearer <token>`).
    authorization: Option<String>,
}

impl AdminClient {
    /// `endpoint` is `http://host:port`.
    pub fn new(endpoint: &str) -> Self {
        Self::with_timeout(endpoint, MEMBERSHIP_TIMEOUT)
    }

    /// As [`AdminClient::new`], with `timeout` per call (for quick probes).
    pub fn with_timeout(endpoint: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http,
            authorization: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.map(|t| format!("Bearer {t}"));
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        }
    }

    /// A client for `endpoint` (`http://` or `https://`) that trusts only
    /// the CA in `tls` and presents its certificate, if any.
    pub fn with_tls(
        endpoint: &str,
        timeout: Duration,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let builder = reqwest::Client::builder().timeout(timeout);
        let builder = match tls {
            Some(tls) => tls.reqwest(builder).map_err(|e| ClientError::Transport {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?,
            None => builder,
        };
        let http = builder.build().map_err(|e| ClientError::Transport {
            endpoint: endpoint.clone(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(AdminClient {
            endpoint,
            http,
            authorization: None,
        })
    }

    /// A member's client for another member's admin API at `addr`
    /// (host:port): `https://` with `tls`, else `http://`.
    pub fn for_member(
        addr: &str,
        timeout: Duration,
        tls: Option<&crate::tls::ClientTls>,
        authorization: Option<String>,
    ) -> Result<Self, ClientError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut client = Self::with_tls(&format!("{scheme}://{addr}"), timeout, tls)?;
        client.authorization = authorization;
        Ok(client)
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.clone(),
            message: e.to_string(),
        }
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        mut resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = resp.status();
        // Read at most MAX_REPLY_BYTES: a member (or anything answering at
        // its address) cannot make this process hold more.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(self.transport(format!("the reply exceeds {MAX_REPLY_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| self.transport(format!("undecodable reply: {e}")))
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                error: crate::text::excerpt(String::from_utf8_lossy(&bytes).trim(), 1024)
                    .into_owned(),
                retryable: status.is_server_error(),
            });
            Err(ClientError::Api {
                status: status.as_u16(),
                body,
            })
        }
    }

    /// GETs `path` and decodes the JSON reply.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.endpoint)))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        self.decode(resp).await
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON reply.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .authorized(self.http.post(format!("{}{path}", self.endpoint)))
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        self.decode(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An admin endpoint whose replies never end.
    async fn endless(status: u16) -> String {
        let app = axum::Router::new().fallback(move || async move {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1 << 20]))
            });
            axum::response::Response::builder()
                .status(status)
                .body(axum::body::Body::from_stream(chunks))
                .expect("response")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_reply_that_never_ends_is_refused_at_the_cap() {
        for status in [200, 500] {
            let client =
                AdminClient::with_timeout(&endless(status).await, Duration::from_secs(600));
            let err = tokio::time::timeout(
                Duration::from_secs(60),
                client.get_json::<serde_json::Value>("/admin/v1/status"),
            )
            .await
            .expect("answered long before the client's timeout")
            .unwrap_err();
            assert!(err.to_string().contains("exceeds"), "{err}");
        }
    }
}
