//! Plugin deadlines in CPU time.
//!
//! The engine's epoch advances every tick of wall-clock time. A call's epoch
//! deadline is always the next tick; each time one passes, wasmtime calls
//! [`CallClock::on_tick`], which reads the worker thread's CPU time: the
//! first reading is the call's baseline, later ones are compared with the
//! budget. So a guest whose worker was only descheduled (a busy machine)
//! has used no CPU and runs on, while a runaway guest is interrupted once it
//! has burnt `deadline` of CPU (plus at most the one tick before the
//! baseline). A wall-clock ceiling of [`WALL_CEILING_FACTOR`] × the deadline
//! (at least one second) interrupts any call regardless, should the thread
//! clock be unreadable. A call that ends within its first tick — every
//! healthy call — never reads a clock at all.

use std::time::Duration;

use wasmtime::UpdateDeadline;

/// The wall-clock ceiling, as a multiple of the CPU deadline.
pub(crate) const WALL_CEILING_FACTOR: u32 = 10;
/// The shortest wall-clock ceiling.
const MIN_WALL_CEILING: Duration = Duration::from_secs(1);

/// A plugin's time limit, worked out once when it is compiled: the CPU
/// budget and the wall-clock ceiling in epoch ticks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuBudget {
    cpu: Duration,
    wall_ticks: u64,
}

impl CpuBudget {
    /// `cpu` of CPU time per call; `tick` is the epoch period.
    pub(crate) fn new(cpu: Duration, tick: Duration) -> CpuBudget {
        let ceiling = (cpu * WALL_CEILING_FACTOR).max(MIN_WALL_CEILING);
        let tick_nanos = tick.as_nanos().max(1);
        CpuBudget {
            cpu,
            wall_ticks: u64::try_from(ceiling.as_nanos().div_ceil(tick_nanos)).unwrap_or(u64::MAX),
        }
    }
}

/// Budget and progress of the call in flight on one instance.
#[derive(Debug, Default)]
pub(crate) struct CallClock {
    budget: CpuBudget,
    ticks: u64,
    cpu_start: Option<Duration>,
}

impl CallClock {
    /// Starts a call with `budget`.
    pub(crate) fn start(&mut self, budget: CpuBudget) {
        self.budget = budget;
        self.ticks = 0;
        self.cpu_start = None;
    }

    /// One epoch tick passed during the call: go on for another tick, or
    /// interrupt the guest (a trap the caller reports as a timeout).
    pub(crate) fn on_tick(&mut self) -> UpdateDeadline {
        self.on_tick_at(thread_cpu_time())
    }

    fn on_tick_at(&mut self, now: Option<Duration>) -> UpdateDeadline {
        self.ticks += 1;
        let used = match (self.cpu_start, now) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            (None, Some(now)) => {
                self.cpu_start = Some(now);
                Duration::ZERO
            }
            (_, None) => Duration::ZERO,
        };
        if used >= self.budget.cpu || self.ticks >= self.budget.wall_ticks {
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(1)
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u32::try_from(t.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interrupted(u: UpdateDeadline) -> bool {
        matches!(u, UpdateDeadline::Interrupt)
    }

    #[test]
    fn cpu_time_counts_from_the_first_tick_and_waiting_is_free() {
        let mut clock = CallClock::default();
        clock.start(CpuBudget::new(
            Duration::from_millis(10),
            Duration::from_millis(1),
        ));
        let ms = |m| Some(Duration::from_millis(m));
        // Baseline at 100 ms of thread CPU time.
        assert!(!interrupted(clock.on_tick_at(ms(100))));
        // Many ticks of wall time without CPU (descheduled): not stopped.
        for _ in 0..500 {
            assert!(!interrupted(clock.on_tick_at(ms(103))));
        }
        assert!(!interrupted(clock.on_tick_at(ms(109))));
        assert!(interrupted(clock.on_tick_at(ms(110))));
    }

    #[test]
    fn the_wall_ceiling_stops_a_call_whose_clock_cannot_be_read() {
        let mut clock = CallClock::default();
        clock.start(CpuBudget::new(
            Duration::from_millis(10),
            Duration::from_millis(1),
        ));
        // 10 × 10 ms is under the 1 s minimum: 1000 ticks.
        for _ in 0..999 {
            assert!(!interrupted(clock.on_tick_at(None)));
        }
        assert!(interrupted(clock.on_tick_at(None)));
        clock.start(CpuBudget::new(
            Duration::from_millis(500),
            Duration::from_millis(1),
        ));
        for _ in 0..4999 {
            assert!(!interrupted(clock.on_tick_at(None)));
        }
        assert!(interrupted(clock.on_tick_at(None)));
    }

    #[test]
    fn the_thread_clock_reads_and_advances_with_work() {
        let before = thread_cpu_time().expect("thread CPU clock");
        let mut x = 0u64;
        while thread_cpu_time().unwrap() <= before {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0 || thread_cpu_time().unwrap() > before);
    }
}
