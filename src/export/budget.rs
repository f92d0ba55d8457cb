//! The memory a batch may derive from its entries.
//!
//! A committed entry is at most `ingest.max_request_bytes` of OTLP, but what
//! a sink derives from it can be far larger: every Prometheus series of a
//! point carries a copy of the metric name and of every label, a histogram
//! point derives one series per bucket, and every Loki line of a resource
//! carries its metadata. A 192-byte gzip request can ask for gigabytes.
//! So a batch charges what it derives to a [`Budget`] *before* allocating
//! it, and stops at the first entry that would pass it:
//!
//! - an entry that does not fit what is left of the batch's budget ends the
//!   batch before it, and starts the next one;
//! - an entry that does not fit a whole budget alone is dead-lettered as one
//!   item (`over_budget`) and export goes on.
//!
//! Both are pure functions of the entries, so every leader cuts the same
//! batches.

/// Bytes one batch may derive from its entries (labels, names, lines and
/// their bookkeeping), on top of the entries themselves; a term of the
/// node's memory bound (`config::memory`).
pub use crate::config::memory::DERIVED_BYTES_PER_BATCH;

/// Bookkeeping charged per string (its header and its map slot), so a
/// million empty labels cost something too.
pub const PER_STRING_BYTES: usize = 32;

/// What is left to derive.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    full: usize,
}

/// The charge did not fit: nothing more may be derived for this batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Budget {
            left: bytes,
            full: bytes,
        }
    }

    /// A budget of what is left of this one, for one entry: the entry's
    /// charges are kept (with [`Budget::keep`]) only if it fits whole.
    pub fn for_entry(&self) -> Budget {
        Budget {
            left: self.left,
            full: self.full,
        }
    }

    /// Keeps the charges of `entry`, made with [`Budget::for_entry`].
    pub fn keep(&mut self, entry: Budget) {
        self.left = entry.left;
    }

    /// Whether nothing was charged yet: an entry that overflows an
    /// untouched budget overflows any batch, and is poison.
    pub fn untouched(&self) -> bool {
        self.left == self.full
    }

    /// Takes `bytes`, or refuses and leaves the budget spent.
    pub fn charge(&mut self, bytes: usize) -> Result<(), OverBudget> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.left = 0;
                Err(OverBudget)
            }
        }
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.left
    }
}

/// What a set of label pairs costs in memory.
pub fn labels_cost<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    labels
        .into_iter()
        .map(|(name, value)| name.len() + value.len() + 2 * PER_STRING_BYTES)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_that_does_not_fit_spends_the_budget() {
        let mut budget = Budget::new(100);
        assert_eq!(budget.charge(60), Ok(()));
        assert_eq!(budget.left(), 40);
        assert_eq!(budget.charge(41), Err(OverBudget));
        assert_eq!(budget.left(), 0);
        assert_eq!(budget.charge(1), Err(OverBudget));
    }

    #[test]
    fn an_entry_is_charged_whole_or_not_at_all() {
        let mut batch = Budget::new(100);
        assert!(batch.untouched());
        let mut entry = batch.for_entry();
        assert_eq!(entry.charge(30), Ok(()));
        batch.keep(entry);
        assert_eq!(batch.left(), 70);
        assert!(!batch.untouched());
        let mut entry = batch.for_entry();
        assert_eq!(entry.charge(80), Err(OverBudget));
        assert_eq!(
            batch.left(),
            70,
            "a failed entry leaves the batch as it was"
        );
    }

    #[test]
    fn labels_cost_their_bytes_and_their_bookkeeping() {
        assert_eq!(labels_cost([("a", "bc")]), 3 + 2 * PER_STRING_BYTES);
        assert_eq!(labels_cost([("", ""), ("", "")]), 4 * PER_STRING_BYTES);
    }
}
