//! What a sink implements, and the batch it builds.
//!
//! `build` must be a pure function of the sink's replicated state and the
//! log entries: any leader that builds the batch for the same range gets the
//! same request bytes and the same advance. That is what lets a new leader
//! recompute a batch its predecessor sent, and what makes a deposed
//! leader's late request harmless (the sink sees a byte-identical repeat).

use std::future::Future;

use bytes::Bytes;

use super::dead_letter::Reason;
use super::http::Answer;
use super::ExportError;
use crate::pb::log::{CursorAdvance, DeadLetter, IngestRequest, SeriesMark, Signal};
use crate::raft::Entry;
use crate::state::{SinkState, DEAD_LETTERS_KEPT};

/// One committed entry as a sink sees it.
pub struct EntryView<'a> {
    /// Log index.
    pub index: u64,
    /// The OTLP request and its stamps.
    pub request: &'a IngestRequest,
}

impl EntryView<'_> {
    /// The signal of the request.
    pub fn signal(&self) -> Signal {
        Signal::try_from(self.request.signal).unwrap_or(Signal::Unspecified)
    }

    /// When the leader proposed it, in ms: the deterministic "now" of the
    /// entry, used wherever a timestamp is missing.
    pub fn proposed_ms(&self) -> i64 {
        (self.request.proposed_unix_nanos / 1_000_000) as i64
    }
}

/// The ingest requests among `entries`, with their indexes.
pub fn ingest_views(entries: &[Entry]) -> Vec<EntryView<'_>> {
    use crate::pb::log::command::Kind;
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            openraft::EntryPayload::Normal(cmd) => match &cmd.kind {
                Some(Kind::Ingest(request)) => Some(EntryView {
                    index: e.log_id.index,
                    request,
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A request for the log range `(from, to]` and the advance that records it.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The sink's cursor the batch starts after.
    pub from: u64,
    /// Last log index covered.
    pub to: u64,
    /// The encoded request; `None` when the range holds nothing for this
    /// sink (the cursor still advances, without a request).
    pub body: Option<Bytes>,
    /// Items (samples or lines) the request carries.
    pub items: u64,
    /// Timestamp of the marker sample in the request (Prometheus), else 0.
    pub marker_ms: i64,
    /// Newest sample per touched series after the batch (Prometheus).
    pub series: Vec<SeriesMark>,
    /// The first [`DEAD_LETTERS_KEPT`] items kept out of the request, with
    /// reasons and subjects of at most [`crate::text::QUOTE_BYTES`]; the
    /// rest are only counted.
    pub dead_letters: Vec<DeadLetter>,
    /// Every item kept out of the request, by reason code.
    pub dead_letter_counts: std::collections::BTreeMap<String, u64>,
    /// Largest sample timestamp exported so far, after the batch.
    pub max_sample_ms: i64,
    /// OTLP payload bytes of every entry in the range.
    pub payload_bytes: u64,
    /// `max_sample_ms` of the state the batch was built on.
    pub base_max_sample_ms: i64,
}

impl Batch {
    /// Starts an empty batch after `from`.
    pub fn new(from: u64, state: &SinkState) -> Self {
        Batch {
            from,
            to: from,
            max_sample_ms: state.max_sample_ms,
            base_max_sample_ms: state.max_sample_ms,
            ..Default::default()
        }
    }

    /// Whether another dead letter would be kept, not only counted.
    pub fn keeps_letters(&self) -> bool {
        self.dead_letters.len() < DEAD_LETTERS_KEPT
    }

    /// Keeps out an entry that alone derives more than a batch may hold
    /// (see `export::budget`), as one item.
    pub fn over_budget(&mut self, index: u64, payload_bytes: usize) {
        let subject = format!(
            "entry {index} of {payload_bytes} bytes derives over {} MiB",
            super::budget::DERIVED_BYTES_PER_BATCH >> 20
        );
        self.dead_letter(index, Reason::OverBudget, &subject, 0, 0.0);
    }

    /// Records an item kept out of the sink.
    pub fn dead_letter(
        &mut self,
        index: u64,
        reason: Reason,
        subject: &str,
        ts_ms: i64,
        value: f64,
    ) {
        let _kept = self.dead_letters_of(index, reason, subject, 1, ts_ms, value);
    }

    /// Records `count` items of one subject kept out of the sink, as one
    /// dead letter (an item per refused point would copy the subject once
    /// per point). Memory stays bounded whatever the entries hold: the
    /// subject is quoted, and past [`DEAD_LETTERS_KEPT`] letters only the
    /// counts grow.
    pub fn dead_letters_of(
        &mut self,
        index: u64,
        reason: Reason,
        subject: &str,
        count: u64,
        ts_ms: i64,
        value: f64,
    ) -> Option<&mut DeadLetter> {
        *self
            .dead_letter_counts
            .entry(reason.as_str().to_string())
            .or_insert(0) += count;
        if self.keeps_letters() {
            self.dead_letters.push(DeadLetter {
                index,
                reason: reason.as_str().to_string(),
                subject: crate::text::quote(subject).into_owned(),
                timestamp_ms: ts_ms,
                // Protobuf omits a zero double, so -0.0 would reach the
                // followers as 0.0 while the leader applies -0.0: every
                // member must hold the same state.
                value: if value == 0.0 { 0.0 } else { value },
                detail: String::new(),
            });
            return self.dead_letters.last_mut();
        }
        None
    }

    /// The Raft command that records this batch as handled.
    pub fn advance(&self, sink: &str, term: u64) -> CursorAdvance {
        CursorAdvance {
            sink: sink.to_string(),
            index: self.to,
            from_index: self.from,
            term,
            marker_ms: self.marker_ms,
            series: self.series.clone(),
            dead_letters: self.dead_letters.clone(),
            payload_bytes: self.payload_bytes,
            delivered: self.items,
            max_sample_ms: self.max_sample_ms,
            dead_letter_counts: self.dead_letter_counts.clone(),
        }
    }

    /// After a refusal of which the sink kept `held` items (Loki keeps the
    /// valid entries of a request it answers 400): the others are one dead
    /// letter with the sink's message. Only for sinks without markers or
    /// series marks.
    pub fn refused_part(&mut self, status: u16, message: &str, held: u64) {
        let refused = self.items.saturating_sub(held);
        let subject = format!(
            "{refused} of {} items in log range {}..={}",
            self.items,
            self.from + 1,
            self.to
        );
        let detail = format!("HTTP {status}: {}", crate::text::quote(message));
        if let Some(d) = self.dead_letters_of(
            self.from + 1,
            Reason::RejectedBySink,
            &subject,
            1,
            0,
            refused as f64,
        ) {
            d.detail = detail;
        }
        self.body = None;
        self.items = held;
    }

    /// After a refusal nothing predicted: every item of the request becomes
    /// a dead letter with the sink's message, and nothing is sent.
    pub fn refused_whole(&mut self, status: u16, message: &str) {
        let subject = format!(
            "{} items in log range {}..={}",
            self.items,
            self.from + 1,
            self.to
        );
        let items = self.items as f64;
        let detail = format!("HTTP {status}: {}", crate::text::quote(message));
        if let Some(d) =
            self.dead_letters_of(self.from + 1, Reason::RejectedBySink, &subject, 1, 0, items)
        {
            d.detail = detail;
        }
        // Nothing of the request is in the sink: no marker, no series moved.
        self.body = None;
        self.items = 0;
        self.marker_ms = 0;
        self.series.clear();
        self.max_sample_ms = self.base_max_sample_ms;
    }
}

/// A destination the leader exports to.
pub trait Sink: Send + Sync + 'static {
    /// The configured name (the key of its cursor).
    fn name(&self) -> &str;

    /// Builds the batch for `entries`, which start right after
    /// `state.cursor`. Deterministic; see the module docs.
    fn build(&self, state: &SinkState, entries: &[Entry]) -> Batch;

    /// Sends the batch's body once.
    fn send(&self, body: Bytes) -> impl Future<Output = Result<Answer, ExportError>> + Send;

    /// After a leader change, or after a refusal: the last log index the
    /// sink is known to hold beyond `state.cursor`, if the sink can tell.
    /// Sinks that cannot tell return `None`, and rely on dropping repeats.
    fn delivered_beyond(
        &self,
        state: &SinkState,
    ) -> impl Future<Output = Result<Option<u64>, ExportError>> + Send;

    /// After a send of `body` whose outcome is unknown (a timeout, a
    /// retryable error, or a takeover the cursor could not settle): how
    /// much of it the sink holds, so that only the rest is sent again.
    fn holding(&self, body: &Bytes) -> impl Future<Output = Result<Holding, ExportError>> + Send;
}

/// What a sink holds of a batch's body, read back after a send of unknown
/// outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Holding {
    /// The sink cannot tell; the body is sent again and must be harmless to
    /// repeat (Prometheus refuses a repeat as out of order, and the
    /// exporter then reads its marker).
    Unknown,
    /// None of it.
    Nothing,
    /// Part of it: `rest` is the body of what is missing.
    Part {
        /// The request for the missing items.
        rest: Bytes,
        /// Items found in the sink.
        held: u64,
    },
    /// All of it.
    All,
}

/// Any configured sink, built from its `[sinks.<name>]` section: the one
/// place that maps a [`SinkKind`](crate::config::sink::SinkKind) to its type, for
/// the exporters and for `otelraft archive replay`.
pub enum AnySink {
    /// Prometheus remote write.
    Prometheus(super::prometheus::PrometheusSink),
    /// Loki, push API or OTLP.
    Loki(super::loki::LokiSink),
}

impl AnySink {
    /// Builds the sink `name` as `config` describes it.
    pub fn new(name: &str, config: &crate::config::sink::SinkConfig) -> Result<Self, ExportError> {
        use super::loki::{LokiFormat, LokiSink};
        use crate::config::sink::SinkKind;
        Ok(match config.kind {
            SinkKind::PrometheusRemoteWrite => {
                AnySink::Prometheus(super::prometheus::PrometheusSink::new(name, config)?)
            }
            SinkKind::Loki => AnySink::Loki(LokiSink::new(name, config, LokiFormat::Push)?),
            SinkKind::LokiOtlp => AnySink::Loki(LokiSink::new(name, config, LokiFormat::Otlp)?),
        })
    }
}

impl Sink for AnySink {
    fn name(&self) -> &str {
        match self {
            AnySink::Prometheus(s) => s.name(),
            AnySink::Loki(s) => s.name(),
        }
    }

    fn build(&self, state: &SinkState, entries: &[Entry]) -> Batch {
        match self {
            AnySink::Prometheus(s) => s.build(state, entries),
            AnySink::Loki(s) => s.build(state, entries),
        }
    }

    async fn send(&self, body: Bytes) -> Result<Answer, ExportError> {
        match self {
            AnySink::Prometheus(s) => s.send(body).await,
            AnySink::Loki(s) => s.send(body).await,
        }
    }

    async fn delivered_beyond(&self, state: &SinkState) -> Result<Option<u64>, ExportError> {
        match self {
            AnySink::Prometheus(s) => s.delivered_beyond(state).await,
            AnySink::Loki(s) => s.delivered_beyond(state).await,
        }
    }

    async fn holding(&self, body: &Bytes) -> Result<Holding, ExportError> {
        match self {
            AnySink::Prometheus(s) => s.holding(body).await,
            AnySink::Loki(s) => s.holding(body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::log::command::Kind;
    use crate::raft::codec;
    use crate::state::tests::normal;

    #[test]
    fn a_dead_letter_of_negative_zero_encodes_to_the_advance_the_leader_applies() {
        let mut batch = Batch::new(0, &SinkState::default());
        batch.dead_letter(7, Reason::OutOfOrder, "m", 1, -0.0);
        let entry = normal(1, 8, Kind::Cursor(batch.advance("prom", 1)));
        let decoded = codec::decode(Bytes::from(codec::encode(&entry).unwrap())).unwrap();
        assert_eq!(format!("{entry:?}"), format!("{decoded:?}"));
        assert_eq!(batch.dead_letters[0].value.to_bits(), 0.0f64.to_bits());
    }
}
