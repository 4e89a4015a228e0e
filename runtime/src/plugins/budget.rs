//! A plugin call's time limits and how they are enforced: its CPU budget, measured across the
//! fiber's run segments, and its wall-clock cap, checked at epoch deadlines by a callback
//! that also makes a long call yield to tokio so that it never holds a worker thread for
//! more than a slice at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::engine::EPOCH_TICK;
use super::state::PluginState;

/// The longest a call runs on a worker thread before it yields (whatever its budget): other
/// requests on that worker wait at most this long for a busy plugin. A call under a
/// millisecond (every default plugin: 10–15 µs) almost never reaches it.
pub const YIELD_SLICE: Duration = Duration::from_millis(2);

/// Epoch ticks covering `d` (at least one).
pub fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(EPOCH_TICK.as_micros()))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// CPU time of the calling thread, where the platform has it.
fn thread_cpu_now() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

/// Where the running segment of a call began: which thread, that thread's CPU clock and the
/// wall clock. A call that yields resumes on whichever worker polls it next, and a thread's
/// CPU clock only measures that thread, so each segment is measured on its own thread.
#[derive(Debug, Clone, Copy)]
struct Mark {
    thread: ThreadId,
    cpu: Option<Duration>,
    wall: Instant,
}

impl Mark {
    fn now() -> Self {
        Self {
            thread: std::thread::current().id(),
            cpu: thread_cpu_now(),
            wall: Instant::now(),
        }
    }

    /// The time the guest ran since this mark: CPU time on the same thread, else (a segment
    /// that began elsewhere without a mark, or no CPU clock) the wall time.
    fn elapsed(&self, now: &Self) -> Duration {
        match (self.cpu, now.cpu) {
            (Some(start), Some(end)) if self.thread == now.thread => end.saturating_sub(start),
            _ => now.wall.saturating_duration_since(self.wall),
        }
    }
}

/// Arms `store`'s epoch deadline for one call: `budget` of guest CPU time (a guest that the
/// scheduler preempts is not punished for time it did not run, while a loop burns its budget
/// and is stopped within a tick of it) and `cap` of wall-clock time however busy the machine
/// is. Time spent waiting in host imports is the host's and is taken off the cap. Every
/// [`YIELD_SLICE`] the call yields to tokio and resumes on the next poll.
pub fn arm(store: &mut Store<PluginState>, budget: Duration, cap: Duration) {
    let started = Instant::now();
    let segment = Arc::new(Mutex::new(Mark::now()));
    let mut used = Duration::ZERO;
    store.set_epoch_deadline(ticks(budget.min(YIELD_SLICE)));
    store.epoch_deadline_callback(move |ctx| {
        let now = Mark::now();
        {
            let mut mark = segment.lock().unwrap_or_else(PoisonError::into_inner);
            used += mark.elapsed(&now);
            *mark = now;
        }
        let wall = started.elapsed().saturating_sub(ctx.data().host_time());
        if used >= budget || wall >= cap {
            return Ok(UpdateDeadline::Interrupt);
        }
        let resumed = segment.clone();
        let next = ticks((budget - used).min(YIELD_SLICE));
        Ok(UpdateDeadline::YieldCustom(
            next,
            Box::pin(async move {
                // tokio's yield lets every other ready task on this worker run first (a plain
                // self-wake would be polled again at once from the LIFO slot).
                tokio::task::yield_now().await;
                // The fiber resumes on this thread, in this poll.
                *resumed.lock().unwrap_or_else(PoisonError::into_inner) = Mark::now();
            }),
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_never_reach_zero() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(Duration::from_micros(1500)), 2);
        assert_eq!(ticks(Duration::from_millis(20)), 20);
        assert_eq!(ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_segment_on_another_thread_is_measured_by_the_wall_clock() {
        let mark = Mark::now();
        std::thread::sleep(Duration::from_millis(20));
        // Same thread: CPU time, which a sleep does not use.
        assert!(mark.elapsed(&Mark::now()) < Duration::from_millis(10));
        let elsewhere = std::thread::spawn(Mark::now).join().unwrap();
        assert!(mark.elapsed(&elsewhere) >= Duration::from_millis(20));
    }
}
