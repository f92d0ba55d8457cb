//! Why an item was kept out of a sink. Every reason is counted per sink in
//! `/metrics` and `admin status`, and the newest items are kept in the
//! replicated state (see `state::SinkState::dead_letters`).

/// A stable code for an item that was diverted to the dead-letter record.
/// The strings are part of the metrics and status interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Older than the newest sample already exported for its series.
    OutOfOrder,
    /// Same timestamp as the newest exported sample of its series, other value.
    ConflictingValue,
    /// So old that Prometheus refuses it (more than an hour behind the newest
    /// sample this sink has exported).
    OutOfBounds,
    /// Stamped further in the future than the sink tolerates.
    TooFarInFuture,
    /// A metric or label name, or a label value, that the sink rejects.
    InvalidLabels,
    /// A delta-temporality sum or histogram; refused rather than converted.
    DeltaTemporality,
    /// A point type the sink's protocol cannot carry (for example an
    /// exponential histogram in remote write 1.0).
    Unsupported,
    /// The stored payload could not be decoded as its signal's OTLP request.
    Undecodable,
    /// The sink refused the request with a non-retryable status that the
    /// checks above did not predict.
    RejectedBySink,
    /// The entries were trimmed from the leader's log before this sink
    /// consumed them (a sink added to a running cluster, or configured on
    /// some members only); they are in the archive, for `archive replay`.
    Trimmed,
    /// The entry would derive more than a batch may hold (see
    /// `export::budget`): dead-lettered whole, as one item.
    OverBudget,
}

impl Reason {
    /// Every reason, for zero-initialised metrics and docs.
    pub const ALL: [Reason; 11] = [
        Reason::OutOfOrder,
        Reason::ConflictingValue,
        Reason::OutOfBounds,
        Reason::TooFarInFuture,
        Reason::InvalidLabels,
        Reason::DeltaTemporality,
        Reason::Unsupported,
        Reason::Undecodable,
        Reason::RejectedBySink,
        Reason::Trimmed,
        Reason::OverBudget,
    ];

    /// The reason code used in metrics labels, status JSON and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OutOfOrder => "out_of_order",
            Reason::ConflictingValue => "conflicting_value",
            Reason::OutOfBounds => "out_of_bounds",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::InvalidLabels => "invalid_labels",
            Reason::DeltaTemporality => "delta_temporality",
            Reason::Unsupported => "unsupported",
            Reason::Undecodable => "undecodable",
            Reason::RejectedBySink => "rejected_by_sink",
            Reason::Trimmed => "trimmed",
            Reason::OverBudget => "over_budget",
        }
    }
}
