//! The ingest module's one error type.

use super::SubmitError;

/// Why a request was refused or a receiver stopped. Both protocol adapters map
/// it to their status codes; `retryable()` is the single source of truth for
/// whether a client should send the same request again.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The content type or content coding is not one OTLP/HTTP defines
    /// (HTTP 415).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The request is larger than `max_request_bytes`, raw or decompressed.
    #[error("request {stage} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// `body` or `decompressed body`.
        stage: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// Reading and decoding the request would hold more than the whole
    /// decode budget; it can never be accepted as it is (HTTP 413).
    #[error(
        "request needs {needed} bytes at its {stage}, over ingest.decode_memory_bytes ({limit}); send smaller requests"
    )]
    OverBudget {
        /// `decoded size`, `encoded size`, ...
        stage: &'static str,
        /// Bytes the request would hold with this stage.
        needed: u64,
        /// The configured budget.
        limit: u64,
    },
    /// The body could not be decoded as the claimed message.
    #[error("{format} decode of {message_type} failed: {error}")]
    Decode {
        /// `protobuf`, `JSON` or `gzip`.
        format: &'static str,
        /// e.g. `ExportLogsServiceRequest`.
        message_type: &'static str,
        /// The decoder's own description.
        error: String,
    },
    /// The request decoded but carries data OTLP forbids (e.g. a 3-byte
    /// trace id); the whole request is refused.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request body could not be read from the connection.
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// No valid token for the OTLP ports (HTTP 401 or 403).
    #[error("{0}")]
    Unauthorized(#[from] crate::auth::AuthError),
    /// The handler refused or failed the submit.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Listening or serving failed.
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl IngestError {
    /// Whether a client should retry the same request: only when the cluster,
    /// not the data, was the problem.
    pub fn retryable(&self) -> bool {
        match self {
            IngestError::Submit(e) => e.retryable(),
            IngestError::Io(_) | IngestError::Transport(_) => true,
            IngestError::UnsupportedMediaType(_)
            | IngestError::TooLarge { .. }
            | IngestError::OverBudget { .. }
            | IngestError::Decode { .. }
            | IngestError::Invalid(_)
            | IngestError::Body(_)
            | IngestError::Unauthorized(_) => false,
        }
    }

    /// The retry hint to send with a retryable answer.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            IngestError::Submit(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The `reason` label of the refusal metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::TooLarge { .. } | IngestError::OverBudget { .. } => "too_large",
            IngestError::Decode { .. } | IngestError::Body(_) => "decode",
            IngestError::Invalid(_) => "invalid",
            IngestError::Unauthorized(e) if e.forbidden() => "forbidden",
            IngestError::Unauthorized(_) => "unauthenticated",
            IngestError::Submit(e) => e.reason(),
            IngestError::Io(_) | IngestError::Transport(_) => "io",
        }
    }

    /// The gRPC code for this error; also the `code` of OTLP/HTTP error bodies.
    ///
    /// Too large maps to RESOURCE_EXHAUSTED *without* RetryInfo: the OTLP
    /// spec makes RESOURCE_EXHAUSTED retryable only when RetryInfo is present,
    /// so clients drop the request instead of resending it forever.
    /// Invariant relied on by `grpc::remap_decode_status`: never OUT_OF_RANGE
    /// or INTERNAL.
    pub(crate) fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            IngestError::UnsupportedMediaType(_)
            | IngestError::Decode { .. }
            | IngestError::Invalid(_)
            | IngestError::Body(_)
            | IngestError::Submit(SubmitError::Invalid(_)) => Code::InvalidArgument,
            IngestError::Unauthorized(e) if e.forbidden() => Code::PermissionDenied,
            IngestError::Unauthorized(_) => Code::Unauthenticated,
            IngestError::TooLarge { .. }
            | IngestError::OverBudget { .. }
            | IngestError::Submit(SubmitError::TooLarge(_)) => Code::ResourceExhausted,
            IngestError::Submit(_) | IngestError::Io(_) | IngestError::Transport(_) => {
                Code::Unavailable
            }
        }
    }
}

/// The most bytes of an error's text that a reply or a log line carries:
/// the item's path and a quoted excerpt of the input fit well within it.
pub(crate) const MAX_ERROR_TEXT_BYTES: usize = 1024;

impl IngestError {
    /// The error's text for replies and logs, cut to
    /// [`MAX_ERROR_TEXT_BYTES`] whatever the input was.
    pub fn short_text(&self) -> String {
        crate::text::excerpt(&self.to_string(), MAX_ERROR_TEXT_BYTES).into_owned()
    }
}

/// Whole seconds for a retry hint: rounded up and at least 1, because
/// `Retry-After: 0` would invite an immediate hammering retry.
pub(crate) fn retry_secs(retry_after: std::time::Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quoting_a_huge_input_is_cut_for_replies_and_logs() {
        let error = IngestError::Body("x".repeat(1_000_000));
        let text = error.short_text();
        assert!(text.len() <= MAX_ERROR_TEXT_BYTES, "{}", text.len());
        assert!(text.ends_with("bytes)"), "{}", &text[text.len() - 40..]);
        let small = IngestError::Body("connection reset".into());
        assert_eq!(small.short_text(), small.to_string());
    }
}
