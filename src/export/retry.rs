//! Which sink answers are worth retrying, and how long to wait between tries.
//!
//! Kept apart from I/O so the rules are plain functions with tests: the HTTP
//! service classifies a response with a [`RetryPolicy`], and the exporter
//! sleeps for what [`Backoff`] says.

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

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next try: uniformly random in [cap/2, cap],
    /// where cap doubles per attempt up to `max`; at least `hint` when the
    /// sink named a time.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let cap = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        let jitter = rand::random_range(0..=half.as_millis() as u64);
        let delay = half + Duration::from_millis(jitter);
        match hint {
            Some(h) => delay.max(h),
            None => delay,
        }
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Tries since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
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

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_honours_hints() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let caps = [100u64, 200, 400, 800, 800, 800];
        for cap in caps {
            let d = b.next_delay(None).as_millis() as u64;
            assert!(
                d >= cap / 2 && d <= cap,
                "delay {d} outside [{}, {cap}]",
                cap / 2
            );
        }
        assert!(b.next_delay(Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay(None) <= Duration::from_millis(100));
    }
}
