//! Capped exponential backoff with full jitter, for every loop that retries
//! an outside service (sinks, the object store, replay).

use std::time::Duration;

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
