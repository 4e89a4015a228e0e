//! Tripping a plugin that keeps failing: after [`TRIP_AFTER`] failures in a row its calls fail
//! at once (by the hook's failure policy) for a back-off that doubles with each trip, up to
//! [`MAX_BACKOFF`]; the first call after the back-off is a trial, and a success closes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TRIP_AFTER: u32 = 5;
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    trips: u32,
    open_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether calls are refused right now.
    pub fn is_open(&self) -> bool {
        self.lock()
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn success(&self) {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        s.trips = 0;
        s.open_until = None;
    }

    /// Records a failure; returns the back-off when this failure trips the breaker.
    pub fn failure(&self) -> Option<Duration> {
        let mut s = self.lock();
        s.consecutive_failures += 1;
        if s.consecutive_failures < TRIP_AFTER {
            return None;
        }
        s.consecutive_failures = 0;
        s.trips += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (s.trips - 1).min(16))
            .min(MAX_BACKOFF);
        s.open_until = Some(Instant::now() + backoff);
        Some(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_repeated_failures_and_closes_on_success() {
        let b = Breaker::default();
        for _ in 0..TRIP_AFTER - 1 {
            assert_eq!(b.failure(), None);
        }
        assert!(!b.is_open());
        assert_eq!(b.failure(), Some(FIRST_BACKOFF));
        assert!(b.is_open());
        for _ in 0..TRIP_AFTER - 1 {
            b.failure();
        }
        assert_eq!(b.failure(), Some(FIRST_BACKOFF * 2));
        b.success();
        assert!(!b.is_open());
    }
}
