//! The cross-pool point-in-time copy behind CreateElementReplica with a TargetPool other than the
//! source's: its worker thread, and the clean-up of copies a restart interrupted.
//!
//! Sequence (each step durable before the next; see `docs/smis.md`):
//! 1. the job is written to the jobs file, naming the volumes it will create;
//! 2. an internal snapshot of the source (hidden, read-only, tagged `PointInTime`) fixes the point
//!    in time; the source keeps taking writes;
//! 3. the target (hidden, tagged `CopyTarget`, same size and block size) is created in the target pool;
//! 4. the worker copies only the mapped extents of the internal snapshot, in chunks, updating
//!    PercentComplete and looking for Terminate/Kill between chunks;
//! 5. on success: target durable, target recorded `Replica`, unhidden, internal snapshot
//!    deleted, job Completed; on failure or stop: target and internal snapshot deleted (their space
//!    reclaimed in the background), job Exception / Terminated / Killed.
//!
//! Invariant: after a crash at any point, [`recover`] leaves no hidden copy volume behind — a
//! `CopyTarget` or `PointInTime` volume is never legitimately present when no worker runs — and
//! every job the file lists as running ends as Completed (if its target was already tagged
//! `Replica`) or Exception.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_array::{ArrayBackend, CopyEnd, ErrorKind, ReplicaKind, ReplicaRecord, VolumeId};

use crate::jobs::{Jobs, JOB_STATE_COMPLETED, JOB_STATE_EXCEPTION};
use crate::limits::COPY_PACE_SLEEP_MAX;
use crate::retcode::Refusal;

/// Everything a copy worker needs.
pub struct CopyPlan {
    pub job: u64,
    pub source: VolumeId,
    pub sync_type: u16,
    pub pit: VolumeId,
    pub target: VolumeId,
    pub mapped_bytes: u64,
    /// The finished replica keeps no relationship (CreateReplica CopyType 5).
    pub unassociated: bool,
    /// Copy bandwidth limit (bytes per second), if any.
    pub rate_bytes_per_sec: Option<u64>,
}

enum Stop {
    /// Terminate (8) or Kill (9) asked for.
    Requested(u16),
    Failed(Refusal),
}

impl From<cairn_array::Error> for Stop {
    fn from(e: cairn_array::Error) -> Stop {
        Stop::Failed(Refusal::from(e))
    }
}

/// The points of a copy worker's life right after one of its backend or job-table operations:
/// what [`run_observed`] reports, so a test can check the model in every intermediate state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One chunk was written to the target.
    Chunk,
    /// The data is copied and the target durable.
    Flushed,
    /// The target was tagged as a finished replica (still hidden).
    Tagged,
    /// The target was unhidden (exported to hosts).
    Unhidden,
    /// The internal snapshot was deleted.
    PitDeleted,
    /// The job reached its final state.
    Finished,
}

/// Starts the worker thread of `plan`.
pub fn spawn(array: Arc<dyn ArrayBackend>, jobs: Arc<Jobs>, plan: CopyPlan) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("cairn-copy-{}", plan.job))
        .spawn(move || run_observed(array.as_ref(), &jobs, &plan, &mut |_| {}))
        .map(|_| ())
}

/// The worker of `plan`, run on the calling thread; `observe` is called after every step (see
/// [`Step`]) and must not wait for the job.
pub fn run_observed(
    array: &dyn ArrayBackend,
    jobs: &Jobs,
    plan: &CopyPlan,
    observe: &mut dyn FnMut(Step),
) {
    let outcome = copy_all(array, jobs, plan, observe)
        .and_then(|()| complete(array, plan, observe).map_err(Stop::from));
    let (state, why) = match outcome {
        Ok(()) => {
            tracing::info!(job = plan.job, "copy completed");
            jobs.finish(plan.job, JOB_STATE_COMPLETED, None);
            observe(Step::Finished);
            return;
        }
        Err(Stop::Requested(JOB_STATE_EXCEPTION)) => (
            JOB_STATE_EXCEPTION,
            "Interrupted: the daemon is stopping".to_owned(),
        ),
        Err(Stop::Requested(state)) => (state, "The copy was stopped on request".to_owned()),
        Err(Stop::Failed(r)) => (
            JOB_STATE_EXCEPTION,
            format!("The copy failed: {}", r.reason),
        ),
    };
    tracing::info!(job = plan.job, state, "copy ended: {why}");
    let fate = if discard(array, plan) {
        "its target was removed"
    } else {
        "its target will be removed at the next start"
    };
    jobs.finish(plan.job, state, Some(format!("{why}; {fate}")));
    observe(Step::Finished);
}

fn percent(done: u64, total: u64) -> u16 {
    if total == 0 {
        return 0;
    }
    // Below 100 until the job has completed.
    ((u128::from(done) * 100 / u128::from(total)).min(99)) as u16
}

fn copy_all(
    array: &dyn ArrayBackend,
    jobs: &Jobs,
    plan: &CopyPlan,
    observe: &mut dyn FnMut(Step),
) -> Result<(), Stop> {
    let started = Instant::now();
    let mut stopped = None;
    let end = array.copy_volume(plan.pit, plan.target, &mut |progress| {
        let copied = progress.copied_bytes;
        if copied > 0 {
            jobs.update(plan.job, |j| j.percent = percent(copied, plan.mapped_bytes));
            observe(Step::Chunk);
        }
        stopped = pace(jobs, plan, started, copied).err();
        match stopped {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    })?;
    match (end, stopped) {
        (CopyEnd::Completed, _) => Ok(()),
        (_, Some(state)) => Err(Stop::Requested(state)),
        // A backend stops only when its control asks; should one not keep to that, the copy
        // fails rather than pass for complete.
        (_, None) => Err(Stop::Failed(Refusal::new(
            crate::retcode::FAILED,
            "The backend stopped the copy",
        ))),
    }
}

/// Holds the copy to its bandwidth limit, still answering Terminate/Kill within a short time;
/// `Err(state)` once a stop is requested.
fn pace(jobs: &Jobs, plan: &CopyPlan, started: Instant, copied: u64) -> Result<(), u16> {
    let rate = plan.rate_bytes_per_sec.filter(|r| *r > 0);
    let due = rate.map(|r| started + Duration::from_secs_f64(copied as f64 / r as f64));
    loop {
        if let Some(state) = jobs.stop_requested(plan.job) {
            return Err(state);
        }
        let now = Instant::now();
        match due {
            Some(due) if now < due => std::thread::sleep((due - now).min(COPY_PACE_SLEEP_MAX)),
            _ => return Ok(()),
        }
    }
}

/// Makes the copied target the replica. Each engine operation is atomic on its own, and the
/// target stays in the model through all of them: hidden + `CopyTarget` (copying), hidden +
/// `Replica` (complete, not yet exported; a restart unhides it and completes the job), then
/// visible + `Replica`. The job is finished only after this, so a Completed job always shows a
/// usable replica.
fn complete(
    array: &dyn ArrayBackend,
    plan: &CopyPlan,
    observe: &mut dyn FnMut(Step),
) -> cairn_array::Result<()> {
    observe(Step::Flushed);
    let mut tag = ReplicaRecord::replica(plan.source, plan.sync_type, plan.job);
    if plan.unassociated {
        tag = tag.detached();
    }
    array.set_replica(plan.target, tag)?;
    observe(Step::Tagged);
    array.set_hidden(plan.target, false)?;
    observe(Step::Unhidden);
    if let Err(e) = array.delete_volume(plan.pit) {
        // Recorded PointInTime: removed at the next start if it cannot be removed now.
        tracing::warn!(job = plan.job, "cannot delete the internal snapshot: {e}");
    }
    observe(Step::PitDeleted);
    Ok(())
}

/// Removes the target and the internal snapshot of a copy that did not complete; false if one of
/// them could not be removed now (it has its record, so the next start removes it).
pub fn discard(array: &dyn ArrayBackend, plan: &CopyPlan) -> bool {
    let mut all = true;
    for id in [plan.target, plan.pit] {
        if let Err(e) = array.delete_volume(id) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(job = plan.job, "cannot delete copy volume {id}: {e}");
                all = false;
            }
        }
    }
    all
}

/// After a start: ends the jobs a restart interrupted and removes what their copies left.
pub fn recover(array: &dyn ArrayBackend, jobs: &Jobs) {
    let unfinished: Vec<_> = jobs
        .list()
        .into_iter()
        .filter(|j| !j.is_finished())
        .collect();
    let names: HashSet<&str> = unfinished
        .iter()
        .flat_map(|j| [j.target_name.as_str(), j.pit_name.as_str()])
        .collect();
    for pool in array.pools() {
        for v in array.volumes(&pool.name) {
            let leftover = match v.replica.map(|t| t.kind) {
                Some(ReplicaKind::CopyTarget | ReplicaKind::PointInTime) => true,
                None => v.hidden && names.contains(v.name.as_str()),
                Some(ReplicaKind::Replica | ReplicaKind::Detached) if v.hidden => {
                    // Completed but not yet unhidden when the daemon stopped: finish it.
                    if let Err(e) = array.set_hidden(v.id, false) {
                        tracing::warn!("cannot unhide replica {}: {e}", v.id);
                    }
                    false
                }
                Some(_) => false,
            };
            if leftover {
                tracing::info!("removing {} left by an interrupted copy", v.id);
                if let Err(e) = array.delete_volume(v.id) {
                    tracing::warn!("cannot remove {}: {e}", v.id);
                }
            }
        }
    }
    for j in unfinished {
        let target: Option<VolumeId> = j.target.as_deref().and_then(|t| t.parse().ok());
        let completed = target
            .and_then(|t| array.volume(t))
            .and_then(|v| v.replica)
            .is_some_and(|t| {
                t.job == j.id && matches!(t.kind, ReplicaKind::Replica | ReplicaKind::Detached)
            });
        if completed {
            jobs.finish(j.id, JOB_STATE_COMPLETED, None);
        } else {
            let text =
                "Interrupted: the daemon stopped before the copy finished; its target was removed";
            jobs.finish(j.id, JOB_STATE_EXCEPTION, Some(text.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_stays_below_100_until_completion() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(1, 2), 50);
        assert_eq!(percent(2, 2), 99);
        assert_eq!(percent(u64::MAX, u64::MAX), 99);
    }
}
