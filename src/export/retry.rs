//! Which sink answers are worth retrying.
//!
//! Kept apart from I/O so the rules are plain functions with tests: the HTTP
//! service classifies a response with a [`RetryPolicy`], and the exporter
//! sleeps for what `crate::backoff::Backoff` says.

use std::time::Duration;

use reqwest::StatusCode;

/// What to do with a sink's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Done,
    /// Try the same request again, not before `after` if the sink said so.
    Retry {
        /// The sink's `Retry-After`, when it sent one.
        after: Option<Duration>,
    },
    /// Never resend this request as it is.
    Refused,
}

/// Classifies sink answers. One implementation serves every HTTP sink today;
/// the trait keeps the rules swappable per sink.
pub trait RetryPolicy: Send + Sync {
    /// The verdict for an HTTP status and its `Retry-After` header.
    fn classify(&self, status: StatusCode, retry_after: Option<Duration>) -> Verdict;
}

/// Prometheus remote write and Loki rules: 2xx is done, 5xx and 429 are
/// retried (honouring `Retry-After`), every other 4xx is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRetryPolicy;

impl RetryPolicy for HttpRetryPolicy {
    fn classify(&self, status: StatusCode, retry_after: Option<Duration>) -> Verdict {
        if status.is_success() {
            Verdict::Done
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Verdict::Retry { after: retry_after }
        } else {
            Verdict::Refused
        }
    }
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is ignored:
/// sinks in this space send seconds).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_remote_write_rules() {
        let p = HttpRetryPolicy;
        assert_eq!(p.classify(StatusCode::NO_CONTENT, None), Verdict::Done);
        assert_eq!(p.classify(StatusCode::OK, None), Verdict::Done);
        assert_eq!(
            p.classify(StatusCode::SERVICE_UNAVAILABLE, None),
            Verdict::Retry { after: None }
        );
        assert_eq!(
            p.classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3))),
            Verdict::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(p.classify(StatusCode::BAD_REQUEST, None), Verdict::Refused);
        assert_eq!(p.classify(StatusCode::NOT_FOUND, None), Verdict::Refused);
        assert_eq!(
            p.classify(StatusCode::INTERNAL_SERVER_ERROR, None),
            Verdict::Retry { after: None }
        );
    }

    #[test]
    fn retry_after_seconds_parse() {
        assert_eq!(parse_retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
