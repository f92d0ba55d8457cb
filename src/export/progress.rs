//! What each exporter on this node is doing right now, for `admin status`
//! and `/metrics`. The replicated part (cursor, delivered, dead letters)
//! lives in the state machine; this is the local, leader-only part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::config::sink::SinkKind;

/// What an exporter is doing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportPhase {
    /// Not leading: nothing to do here.
    #[default]
    Idle,
    /// A new leader learning what the sink already holds.
    Settling,
    /// Sending batches.
    Exporting,
    /// Every ingest entry is exported.
    CaughtUp,
    /// Waiting to try a failed send again.
    Retrying,
}

impl ExportPhase {
    /// The name `admin status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportPhase::Idle => "idle",
            ExportPhase::Settling => "settling",
            ExportPhase::Exporting => "exporting",
            ExportPhase::CaughtUp => "caught_up",
            ExportPhase::Retrying => "retrying",
        }
    }
}

/// The live view of one exporter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkProgress {
    /// Protocol, as in the config.
    pub kind: String,
    /// What it is doing.
    pub phase: ExportPhase,
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
            p.phase = ExportPhase::Idle;
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
