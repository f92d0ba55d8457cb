//! Log lines anyone can cause (refused connections, refused requests) are
//! rate-limited: at most one per second per kind, and the line that gets
//! through says how many were held back. Counters keep the full picture.

use std::sync::atomic::{AtomicU64, Ordering};

/// At most one log line per second; says how many were suppressed.
#[derive(Default)]
pub struct LogLimiter {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// `Some(suppressed)` when a line may be logged now, with the number
    /// of lines held back since the last one; `None` otherwise.
    pub fn allow(&self) -> Option<u64> {
        let now = crate::clock::since_epoch().as_secs();
        let last = self.last_second.swap(now, Ordering::Relaxed);
        if last == now {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_about_one_line_a_second_and_the_next_line_counts_the_rest() {
        let limiter = LogLimiter::default();
        let mut logged = 0u64;
        let mut reported = 0u64;
        for _ in 0..1000 {
            if let Some(suppressed) = limiter.allow() {
                logged += 1;
                reported += suppressed;
            }
        }
        assert!((1..=3).contains(&logged), "{logged} lines for a burst");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let last = limiter.allow().expect("a new second logs again");
        assert_eq!(logged + reported + last, 1000);
    }
}
