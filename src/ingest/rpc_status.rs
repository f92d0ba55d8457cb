//! Hand-written `google.rpc.Status` and `google.rpc.RetryInfo`: OTLP/HTTP
//! error bodies are a Status, and OTLP/gRPC retry hints are a RetryInfo
//! detail. Field numbers follow googleapis' `status.proto`,
//! `error_details.proto` and protobuf's `any.proto` / `duration.proto`.

use std::time::Duration;

use tonic::Code;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing English message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details, e.g. a RetryInfo.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Any {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryInfo {
    /// How long the client should wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds beyond `seconds`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The type URL OTLP clients look for in status details.
pub(crate) const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// A status without details.
    pub(crate) fn new(code: Code, message: String) -> Self {
        RpcStatus {
            code: code as i32,
            message,
            details: Vec::new(),
        }
    }

    /// Adds a RetryInfo detail, which is what makes RESOURCE_EXHAUSTED
    /// retryable for OTLP clients and refines UNAVAILABLE's backoff.
    pub(crate) fn with_retry_info(mut self, delay: Duration) -> Self {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        self.details.push(Any {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: prost::Message::encode_to_vec(&info),
        });
        self
    }
}
