//! What each exporter on this node is doing right now, for `admin status`
//! and `/metrics`. The replicated part (cursor, delivered, dead letters)
//! lives in the state machine; this is the local, leader-only part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::config::SinkKind;

/// The live view of one exporter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkProgress {
    /// Protocol, as in the config.
    pub kind: String,
    /// `idle` (not leader), `settling`, `exporting`, `caught_up` or
    /// `retrying`.
    pub phase: String,
    /// Proposal time (ms) of the oldest entry not yet exported, when this
    /// node is exporting and behind.
    pub oldest_unexported_ms: Option<i64>,
    /// The last error, until the next success.
    pub last_error: Option<String>,
}

/// Every exporter's progress on this node, shared with admin.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<String, SinkProgress>>>,
}

impl Registry {
    /// Registers a sink as idle.
    pub fn register(&self, name: &str, kind: SinkKind) {
        self.update(name, |p| {
            p.kind = kind.as_str().to_string();
            p.phase = "idle".to_string();
        });
    }

    /// Changes one sink's progress.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut SinkProgress)) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(name.to_string()).or_default());
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> BTreeMap<String, SinkProgress> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
