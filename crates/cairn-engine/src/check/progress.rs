//! Progress of a check, reported to a caller's callback as the check goes (a progress bar on a
//! large pool).
//!
//! A check runs in two phases, each with a total known when it starts: the walk counts the
//! metadata blocks it claims against the superblock's count of metadata blocks, and the
//! comparison counts the bitmap pages it has passed against the pages of the device. Within a
//! phase, `done` only grows, never passes `total`, and reaches it when the phase ends (a corrupt
//! pool may hold more or fewer metadata blocks than the superblock says: the count is clamped,
//! then completed). Each report differs from the one before.

/// The phase a check is in, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CheckPhase {
    /// Reading the trees: `done` counts metadata blocks claimed.
    Walk,
    /// Comparing the references with the space map: `done` counts bitmap pages passed.
    Compare,
}

/// One progress report: `done` of `total` units of `phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckProgress {
    pub phase: CheckPhase,
    pub done: u64,
    pub total: u64,
}

/// The callback a check reports its progress to.
pub type ProgressFn = Box<dyn FnMut(CheckProgress)>;

/// Counts a phase's progress and reports each change to the callback, if there is one.
pub(super) struct Meter {
    sink: Option<ProgressFn>,
    at: CheckProgress,
}

impl Meter {
    pub(super) fn new(sink: Option<ProgressFn>) -> Meter {
        Meter {
            sink,
            at: CheckProgress {
                phase: CheckPhase::Walk,
                done: 0,
                total: 0,
            },
        }
    }

    /// Starts `phase` with `total` units, reporting none done.
    pub(super) fn start(&mut self, phase: CheckPhase, total: u64) {
        debug_assert!(phase >= self.at.phase, "phases run in order");
        self.at = CheckProgress {
            phase,
            done: 0,
            total,
        };
        self.report();
    }

    /// Counts one more unit of the current phase (clamped to its total).
    pub(super) fn step(&mut self) {
        self.advance_to(self.at.done.saturating_add(1));
    }

    /// Counts the current phase done up to `done` (clamped to its total; never backwards).
    pub(super) fn advance_to(&mut self, done: u64) {
        let done = done.min(self.at.total);
        if done > self.at.done {
            self.at.done = done;
            self.report();
        }
    }

    /// Ends the current phase: all its units are done.
    pub(super) fn finish(&mut self) {
        self.advance_to(self.at.total);
    }

    fn report(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            sink(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::types::{PoolOptions, VolumeOptions};
    use crate::{check_device_with_progress, Pool};
    use cairn_io::MemDevice;

    /// A pool of three volumes, each with a snapshot and data shared and not.
    fn pool(dev: Arc<MemDevice>) -> Arc<Pool> {
        let opts = PoolOptions {
            commit_interval: None,
            node_cache_bytes: 1 << 20,
            preallocate: false,
        };
        let p = Pool::create(dev, "progress", opts).unwrap();
        for n in 0..3u64 {
            let v = p
                .create_volume(&format!("v{n}"), 8 << 20, VolumeOptions::default())
                .unwrap();
            for i in 0..200u64 {
                p.write(v.id, (i * 13 % 2000) * 4096, &[(i + n) as u8; 4096])
                    .unwrap();
            }
            p.snapshot(v.id, &format!("v{n}-s"), VolumeOptions::default())
                .unwrap();
            p.write(v.id, 0, &[9u8; 4096]).unwrap();
        }
        p
    }

    /// Asserts the reports of one check: phases in order, each starting at 0, growing strictly
    /// within its total and ending at it. Returns the walk's and the comparison's totals.
    fn assert_monotonic(seen: &[CheckProgress]) -> (u64, u64) {
        let mut totals = Vec::new();
        let mut prev: Option<CheckProgress> = None;
        for p in seen {
            assert!(p.done <= p.total, "{p:?}");
            match prev {
                Some(q) if q.phase == p.phase => {
                    assert_eq!(q.total, p.total, "{q:?} then {p:?}");
                    assert!(p.done > q.done, "{q:?} then {p:?}");
                }
                _ => {
                    if let Some(q) = prev {
                        assert!(q.phase < p.phase, "{q:?} then {p:?}");
                        assert_eq!(q.done, q.total, "phase ended short: {q:?}");
                    }
                    assert_eq!(p.done, 0, "phase starts at 0: {p:?}");
                    totals.push((p.phase, p.total));
                }
            }
            prev = Some(*p);
        }
        let last = prev.expect("progress reported");
        assert_eq!(last.done, last.total, "{last:?}");
        match totals[..] {
            [(CheckPhase::Walk, w), (CheckPhase::Compare, c)] => (w, c),
            _ => panic!("phases {totals:?}"),
        }
    }

    fn recorder() -> (Arc<Mutex<Vec<CheckProgress>>>, ProgressFn) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, Box::new(move |p| sink.lock().unwrap().push(p)))
    }

    #[test]
    fn offline_check_reports_monotonic_progress_reaching_each_total() {
        let dev = Arc::new(MemDevice::new(1 << 30));
        pool(dev.clone()).close().unwrap();
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        let (seen, sink) = recorder();
        let report = check_device_with_progress(dev, sink).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        let seen = seen.lock().unwrap();
        let (walk, compare) = assert_monotonic(&seen);
        assert_eq!(walk, sb.meta_blocks);
        assert_eq!(compare, sb.device_blocks.div_ceil(crate::meta::PAGE_BITS));
        // On a clean pool the walk claims exactly the superblock's metadata blocks: its count
        // reaches the total one block at a time, not by the phase's completion.
        let walked: Vec<_> = seen
            .iter()
            .filter(|p| p.phase == CheckPhase::Walk)
            .collect();
        assert_eq!(
            walked.len() as u64,
            walk + 1,
            "one report per block claimed"
        );
    }

    #[test]
    fn online_check_reports_progress_under_the_pool_lock() {
        let dev = Arc::new(MemDevice::new(1 << 30));
        let p = pool(dev.clone());
        let (seen, sink) = recorder();
        let report = p.check_with_progress(sink).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        // The check committed first: the superblock on the device is the state it checked.
        let sb = crate::format::read_superblock(dev.as_ref()).unwrap();
        assert_eq!(report.generation, sb.gen);
        let (walk, _) = assert_monotonic(&seen.lock().unwrap());
        assert_eq!(walk, sb.meta_blocks);
        p.close().unwrap();
    }
}
