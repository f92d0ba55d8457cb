//! The path every decoded request takes, whichever protocol brought it, and
//! the ingest metrics: a request is counted as accepted only once the
//! handler has committed it, and every refusal is counted with its reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use tracing::{debug, warn};

use super::admission::Reservation;
use super::decode::{decode_body, Coding, DecodeLimits, Format};
use super::error::MAX_ERROR_TEXT_BYTES;
use super::request::OtlpRequest;
use super::{Ingest, IngestError};
use crate::metrics::{refusal, signal as signal_label};
use crate::pb::log::{IngestRequest, Signal};
use crate::tls::WorkSlots;

/// Largest uncompressed body decoded on the request's own task (about 50 µs
/// of protobuf decoding, see `benches/hot_paths.rs`, and at most a few MiB
/// decoded); larger or gzip bodies go to the blocking pool.
const INLINE_DECODE_MAX_BYTES: usize = 32 * 1024;

/// Tells a decode on the blocking pool that its request's future was
/// dropped: the client hung up, or the server is stopping.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What an accepted request got: committed (unless it held no records),
/// with the part that was refused, if any.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    pub partial: Option<Partial>,
}

/// OTLP's `partial_success`: how many records were refused, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Partial {
    pub rejected: u64,
    pub message: String,
}

impl Accepted {
    /// The `Export*ServiceResponse` for this answer.
    pub(crate) fn response<T: OtlpRequest>(&self) -> T::Response {
        match &self.partial {
            Some(p) => T::partial_success(p.rejected, p.message.clone()),
            None => T::Response::default(),
        }
    }
}

impl Ingest {
    /// Decodes a body whose bytes `reservation` holds: small plain bodies on
    /// this task, the rest on the blocking pool under a slot of its
    /// connection and one of the node. Returns the request and the
    /// reservation, which then holds its decoded size.
    pub(crate) async fn decode<T: OtlpRequest>(
        &self,
        raw: Bytes,
        format: Format,
        coding: Coding,
        connection: Option<&WorkSlots>,
        mut reservation: Reservation,
    ) -> Result<(T, Reservation), IngestError> {
        let max_bytes = self.settings.max_request_bytes;
        if coding == Coding::Identity && raw.len() <= INLINE_DECODE_MAX_BYTES {
            let at = DecodeLimits {
                max_bytes,
                limits: &self.settings.limits,
                reservation: &mut reservation,
                cancelled: &|| false,
            };
            return decode_body::<T>(raw, format, coding, at).map(|r| (r, reservation));
        }
        let slot = self.admission.slot(connection).await?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancelled.clone());
        let limits = self.settings.limits.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let at = DecodeLimits {
                max_bytes,
                limits: &limits,
                reservation: &mut reservation,
                cancelled: &|| cancelled.load(Ordering::Relaxed),
            };
            decode_body::<T>(raw, format, coding, at).map(|r| (r, reservation))
        })
        .await;
        decoded.map_err(|e| IngestError::Decode {
            format: "body",
            message_type: T::TYPE_NAME,
            error: format!("decoder task failed: {e}"),
        })?
    }

    /// Validates, labels, encodes and submits one decoded request; resolves
    /// when the handler has committed or refused it. Items that fail a check
    /// are removed and the rest committed: the answer's `rejected` says how
    /// many records went and why. A request with nothing valid left is
    /// refused whole.
    pub(crate) async fn accept<T: OtlpRequest>(
        &self,
        mut request: T,
        mut reservation: Reservation,
        started: Instant,
    ) -> Result<Accepted, IngestError> {
        let signal = T::SIGNAL;
        let received = request.records();
        let rejected = request.reject_invalid(&self.settings.limits);
        let records = received - rejected.records;
        let partial = match rejected.first {
            Some(problem) if records == 0 => {
                return Err(self.refuse(signal, received, IngestError::Invalid(problem)));
            }
            Some(problem) => Some(self.refuse_part(signal, rejected.records, received, problem)),
            None => None,
        };
        if records == 0 {
            // OTLP: an empty request is valid and succeeds; nothing to commit.
            debug!(
                signal = signal.name(),
                "empty export request acknowledged without submit"
            );
            return Ok(Accepted::default());
        }
        let settings = &self.settings;
        request.label_resources(&settings.node_label_key, &settings.node_label_value);
        // The one and only encoding: this payload is what the log stores.
        if let Err(e) = reservation.grow(request.encoded_len() as u64, "encoded size") {
            return Err(self.refuse(signal, records, e));
        }
        let payload = request.encode_to_vec();
        // From here the payload is the handler's: its in-flight budget holds
        // it until commit.
        drop(request);
        drop(reservation);
        let bytes = payload.len();
        let submit = IngestRequest {
            signal: signal as i32,
            payload: payload.into(),
            records,
            received_unix_nanos: crate::clock::unix_nanos(),
            origin_node: settings.node_id,
            ..Default::default()
        };
        match self.handler.submit(submit).await {
            Ok(receipt) => {
                let labels = signal_label(signal.name());
                self.metrics
                    .ingest_records_accepted
                    .get_or_create(&labels)
                    .inc_by(records);
                self.metrics
                    .ingest_bytes_accepted
                    .get_or_create(&labels)
                    .inc_by(bytes as u64);
                self.metrics
                    .ingest_ack_seconds
                    .observe(started.elapsed().as_secs_f64());
                debug!(
                    signal = signal.name(),
                    records,
                    bytes,
                    log_index = receipt.log_index,
                    "export request committed"
                );
                Ok(Accepted { partial })
            }
            Err(e) => Err(self.refuse(signal, records, IngestError::Submit(e))),
        }
    }

    /// Lets a request through when the OTLP ports are open, or when its
    /// `Authorization` value carries an ingest token.
    pub(crate) fn authorize(&self, authorization: Option<&[u8]>) -> Result<(), IngestError> {
        match &self.settings.auth {
            None => Ok(()),
            Some(tokens) => Ok(tokens.check(authorization, crate::auth::Scope::Ingest)?),
        }
    }

    /// Counts and logs the refused part of a request that is otherwise
    /// accepted; returns the answer's `partial_success`.
    fn refuse_part(
        &self,
        signal: Signal,
        rejected: u64,
        received: u64,
        problem: String,
    ) -> Partial {
        let labels = refusal(signal.name(), "invalid");
        self.metrics
            .ingest_records_refused
            .get_or_create(&labels)
            .inc_by(rejected);
        let message = format!("{rejected} of {received} records rejected, the first: {problem}");
        let message = crate::text::excerpt(&message, MAX_ERROR_TEXT_BYTES).into_owned();
        if let Some(suppressed) = self.refusal_limiter("partly_invalid").allow() {
            warn!(
                signal = signal.name(),
                rejected,
                received,
                error = %message,
                suppressed,
                "export request partly refused"
            );
        }
        Partial { rejected, message }
    }

    /// The log limiter of one refusal reason.
    fn refusal_limiter(&self, reason: &'static str) -> Arc<crate::log_limit::LogLimiter> {
        self.refusal_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(reason)
            .or_default()
            .clone()
    }

    /// Counts and logs a refusal, handing the error back for the answer.
    /// `records` is 0 when the request never decoded far enough to count.
    pub(crate) fn refuse(&self, signal: Signal, records: u64, error: IngestError) -> IngestError {
        let labels = refusal(signal.name(), error.reason());
        self.metrics
            .ingest_requests_refused
            .get_or_create(&labels)
            .inc();
        self.metrics
            .ingest_records_refused
            .get_or_create(&labels)
            .inc_by(records);
        if let Some(suppressed) = self.refusal_limiter(error.reason()).allow() {
            warn!(
                signal = signal.name(),
                records,
                reason = error.reason(),
                retryable = error.retryable(),
                error = %error.short_text(),
                suppressed,
                "export request refused"
            );
        }
        error
    }
}
