//! Jobs (SMI-S Job Control): the table of CIM_ConcreteJob records, their persistence in a small
//! JSON file in the data directory, and the Terminate/Kill hand-shake with the copy workers.
//!
//! Invariants:
//! - A job is written to the file (write to a temporary file, fsync, rename) before the volumes it
//!   will create exist, and again at every change of JobState; so after any crash the file names
//!   every job that may have left something behind. Percent updates are kept in memory only.
//! - Job ids are never reused (the next id is in the file).
//! - JobState only moves from Running (4) to one final state (7, 8, 9 or 10), once.
//! - Finished jobs stay until DeleteInstance, until TimeBeforeRemoval has passed, or until more than
//!   [`JOBS_FINISHED_MAX`] are finished (oldest first); running jobs are never dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::limits::{JOBS_FILE_BYTES_MAX, JOBS_FINISHED_MAX};

pub const JOB_STATE_RUNNING: u16 = 4;
pub const JOB_STATE_COMPLETED: u16 = 7;
pub const JOB_STATE_TERMINATED: u16 = 8;
pub const JOB_STATE_KILLED: u16 = 9;
pub const JOB_STATE_EXCEPTION: u16 = 10;

/// One job as kept in memory and in the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRecord {
    pub id: u64,
    /// What the job does, for ElementName/Description.
    pub description: String,
    pub state: u16,
    pub percent: u16,
    pub submitted_unix_secs: u64,
    pub last_change_unix_secs: u64,
    pub finished_unix_secs: Option<u64>,
    pub error: Option<String>,
    /// The source volume (hex id).
    pub source: String,
    /// Name the target volume has (or will have) and its pool.
    pub target_name: String,
    pub target_pool: String,
    /// Name of the internal point-in-time snapshot.
    pub pit_name: String,
    /// The target volume's id once it exists (hex).
    pub target: Option<String>,
    pub sync_type: u16,
    /// Terminate (8) or Kill (9) asked for and not yet acted on; memory only.
    #[serde(skip)]
    pub stop_requested: Option<u16>,
}

impl JobRecord {
    pub fn is_finished(&self) -> bool {
        self.state != JOB_STATE_RUNNING
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct JobFile {
    next_id: u64,
    jobs: Vec<JobRecord>,
}

/// What became of a Terminate/Kill request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The job had already finished (or never existed).
    NotRunning,
    /// The job stopped and cleaned up within the wait.
    Stopped,
    /// The job is still stopping.
    Stopping,
}

/// The job table.
pub struct Jobs {
    path: Option<PathBuf>,
    time_before_removal: Duration,
    table: Mutex<JobFile>,
    changed: Condvar,
    /// Called after every change of the table (the indication producer's signal); it must not
    /// call back into the table.
    watcher: Mutex<Option<Watcher>>,
}

/// A callback told that the job table changed.
pub type Watcher = std::sync::Arc<dyn Fn() + Send + Sync>;

pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn file_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::JobsFile, path.display().to_string(), e)
}

/// Reads the JSON state file at `path` (a missing file is the default state), at most
/// [`JOBS_FILE_BYTES_MAX`] bytes.
pub(crate) fn read_file<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(file_error(path, e)),
    };
    if meta.len() > JOBS_FILE_BYTES_MAX {
        return Err(Error::new(
            ErrorKind::JobsFile,
            format!(
                "{}: {} bytes, more than {JOBS_FILE_BYTES_MAX}",
                path.display(),
                meta.len()
            ),
        ));
    }
    let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
    serde_json::from_slice(&text).map_err(|e| file_error(path, e))
}

/// Writes `file` as JSON to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_file(path: &Path, file: &impl Serialize) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Jobs {
    /// Loads the table from `path` (a missing file is an empty table). An unreadable or damaged
    /// file is moved aside to `<path>.damaged` and the table starts empty; the error is returned
    /// with the table so the caller can log it.
    pub fn load(path: Option<PathBuf>, time_before_removal: Duration) -> (Jobs, Option<Error>) {
        let (file, error) = match path.as_deref().map(read_file) {
            None => (JobFile::default(), None),
            Some(Ok(f)) => (f, None),
            Some(Err(e)) => {
                if let Some(p) = path.as_deref() {
                    let _ = std::fs::rename(p, p.with_extension("json.damaged"));
                }
                (JobFile::default(), Some(e))
            }
        };
        let jobs = Jobs {
            path,
            time_before_removal,
            table: Mutex::new(file),
            changed: Condvar::new(),
            watcher: Mutex::new(None),
        };
        (jobs, error)
    }

    pub fn time_before_removal(&self) -> Duration {
        self.time_before_removal
    }

    /// Sets the callback told of every change of the table (one; a second replaces it).
    pub fn watch(&self, watcher: Watcher) {
        *self.watcher.lock() = Some(watcher);
    }

    fn notify_watcher(&self) {
        if let Some(w) = self.watcher.lock().as_ref() {
            w();
        }
    }

    fn persist(&self, file: &JobFile) -> Result<()> {
        self.notify_watcher();
        match &self.path {
            None => Ok(()),
            Some(p) => write_file(p, file).map_err(|e| file_error(p, e)),
        }
    }

    /// Adds a running job and writes the file; returns its id. Nothing is added if the file
    /// cannot be written.
    pub fn add(&self, mut rec: JobRecord) -> Result<u64> {
        let mut t = self.table.lock();
        t.next_id = t.next_id.max(1);
        rec.id = t.next_id;
        t.next_id += 1;
        let id = rec.id;
        t.jobs.push(rec);
        if let Err(e) = self.persist(&t) {
            t.jobs.retain(|j| j.id != id);
            return Err(e);
        }
        Ok(id)
    }

    /// Forgets a job that never started (its method failed before answering 4096).
    pub fn discard(&self, id: u64) {
        let mut t = self.table.lock();
        t.jobs.retain(|j| j.id != id);
        if let Err(e) = self.persist(&t) {
            tracing::warn!("cannot write the jobs file: {}", e.report());
        }
    }

    /// Updates a job in place (memory only) with `f`.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut JobRecord)) {
        let mut t = self.table.lock();
        if let Some(j) = t.jobs.iter_mut().find(|j| j.id == id) {
            f(j);
        }
        drop(t);
        self.notify_watcher();
    }

    /// Updates a job with `f` and writes the file.
    pub fn update_durably(&self, id: u64, f: impl FnOnce(&mut JobRecord)) {
        let mut t = self.table.lock();
        if let Some(j) = t.jobs.iter_mut().find(|j| j.id == id) {
            f(j);
        }
        if let Err(e) = self.persist(&t) {
            tracing::warn!("cannot write the jobs file: {}", e.report());
        }
    }

    /// Moves a running job to its final `state`, once; writes the file and wakes waiters.
    pub fn finish(&self, id: u64, state: u16, error: Option<String>) {
        debug_assert!(state != JOB_STATE_RUNNING);
        let now = now_unix_secs();
        {
            let mut t = self.table.lock();
            if let Some(j) = t.jobs.iter_mut().find(|j| j.id == id && !j.is_finished()) {
                j.state = state;
                if state == JOB_STATE_COMPLETED {
                    j.percent = 100;
                }
                j.error = error;
                j.last_change_unix_secs = now;
                j.finished_unix_secs = Some(now);
                j.stop_requested = None;
            }
            if let Err(e) = self.persist(&t) {
                tracing::warn!("cannot write the jobs file: {}", e.report());
            }
        }
        self.changed.notify_all();
    }

    /// The Terminate/Kill request pending for a running job.
    pub fn stop_requested(&self, id: u64) -> Option<u16> {
        let t = self.table.lock();
        t.jobs
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.stop_requested)
    }

    /// Asks a running job to stop with final state `state` (8 or 9) and waits up to `wait` for it.
    pub fn request_stop(&self, id: u64, state: u16, wait: Duration) -> StopOutcome {
        let mut t = self.table.lock();
        match t.jobs.iter_mut().find(|j| j.id == id) {
            Some(j) if !j.is_finished() => j.stop_requested = Some(state),
            _ => return StopOutcome::NotRunning,
        }
        let deadline = std::time::Instant::now() + wait;
        loop {
            if !t.jobs.iter().any(|j| j.id == id && !j.is_finished()) {
                return StopOutcome::Stopped;
            }
            if self.changed.wait_until(&mut t, deadline).timed_out() {
                return StopOutcome::Stopping;
            }
        }
    }

    /// Asks every running job to stop with final state `state` and waits up to `wait` for all of
    /// them; true if none is running any more.
    pub fn stop_all(&self, state: u16, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        let mut t = self.table.lock();
        for j in t.jobs.iter_mut().filter(|j| !j.is_finished()) {
            j.stop_requested = Some(state);
        }
        loop {
            if t.jobs.iter().all(|j| j.is_finished()) {
                return true;
            }
            if self.changed.wait_until(&mut t, deadline).timed_out() {
                return false;
            }
        }
    }

    /// Waits until job `id` is no longer running (or `timeout` passes); true if it has finished
    /// or is unknown.
    pub fn wait_finished(&self, id: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut t = self.table.lock();
        loop {
            if !t.jobs.iter().any(|j| j.id == id && !j.is_finished()) {
                return true;
            }
            if self.changed.wait_until(&mut t, deadline).timed_out() {
                return false;
            }
        }
    }

    /// Drops finished jobs past TimeBeforeRemoval and the oldest beyond the bound.
    fn purge(&self, t: &mut JobFile) {
        let now = now_unix_secs();
        let tbr = self.time_before_removal.as_secs();
        let before = t.jobs.len();
        t.jobs.retain(|j| {
            j.finished_unix_secs
                .is_none_or(|f| now < f.saturating_add(tbr))
        });
        let finished = t.jobs.iter().filter(|j| j.is_finished()).count();
        let mut excess = finished.saturating_sub(JOBS_FINISHED_MAX);
        if excess > 0 {
            t.jobs.retain(|j| {
                if excess > 0 && j.is_finished() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        if t.jobs.len() != before {
            if let Err(e) = self.persist(t) {
                tracing::warn!("cannot write the jobs file: {}", e.report());
            }
        }
    }

    /// Every job still kept, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let mut t = self.table.lock();
        self.purge(&mut t);
        t.jobs.clone()
    }

    pub fn get(&self, id: u64) -> Option<JobRecord> {
        self.list().into_iter().find(|j| j.id == id)
    }

    /// Removes a finished job (DeleteInstance): `JobRunning` if it is still running,
    /// `JobNotFound` if there is no such job.
    pub fn delete(&self, id: u64) -> Result<()> {
        let mut t = self.table.lock();
        match t.jobs.iter().find(|j| j.id == id) {
            None => Err(Error::new(ErrorKind::JobNotFound, format!("Job {id}"))),
            Some(j) if !j.is_finished() => {
                Err(Error::new(ErrorKind::JobRunning, format!("Job {id}")))
            }
            Some(_) => {
                t.jobs.retain(|j| j.id != id);
                if let Err(e) = self.persist(&t) {
                    tracing::warn!("cannot write the jobs file: {}", e.report());
                }
                Ok(())
            }
        }
    }

    /// Number of running jobs.
    pub fn running(&self) -> usize {
        self.table
            .lock()
            .jobs
            .iter()
            .filter(|j| !j.is_finished())
            .count()
    }

    /// Writes the file now (after recovery changed several jobs).
    pub fn save(&self) {
        let t = self.table.lock();
        if let Err(e) = self.persist(&t) {
            tracing::warn!("cannot write the jobs file: {}", e.report());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> JobRecord {
        JobRecord {
            id: 0,
            description: "copy".into(),
            state: JOB_STATE_RUNNING,
            percent: 0,
            submitted_unix_secs: now_unix_secs(),
            last_change_unix_secs: now_unix_secs(),
            finished_unix_secs: None,
            error: None,
            source: "00".into(),
            target_name: "t".into(),
            target_pool: "p".into(),
            pit_name: "pit".into(),
            target: None,
            sync_type: 7,
            stop_requested: None,
        }
    }

    #[test]
    fn jobs_survive_a_reload_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.json");
        let (jobs, err) = Jobs::load(Some(path.clone()), Duration::from_secs(60));
        assert!(err.is_none());
        let a = jobs.add(rec()).expect("add");
        let b = jobs.add(rec()).expect("add");
        jobs.finish(a, JOB_STATE_COMPLETED, None);
        jobs.discard(b);
        drop(jobs);
        let (jobs, err) = Jobs::load(Some(path), Duration::from_secs(60));
        assert!(err.is_none());
        let list = jobs.list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].id, list[0].state, list[0].percent), (a, 7, 100));
        let c = jobs.add(rec()).expect("add");
        assert!(c > b, "ids are never reused: {c} after {b}");
    }

    #[test]
    fn a_damaged_file_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.json");
        std::fs::write(&path, b"{ not json").expect("write");
        let (jobs, err) = Jobs::load(Some(path.clone()), Duration::from_secs(60));
        assert!(err.is_some());
        assert!(jobs.list().is_empty());
        assert!(path.with_extension("json.damaged").exists());
    }

    #[test]
    fn finished_jobs_expire_and_running_ones_stay() {
        let (jobs, _) = Jobs::load(None, Duration::from_secs(0));
        let a = jobs.add(rec()).expect("add");
        let b = jobs.add(rec()).expect("add");
        jobs.finish(a, JOB_STATE_EXCEPTION, Some("boom".into()));
        let ids: Vec<u64> = jobs.list().iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![b]);
        let kind = |r: Result<()>| r.map_err(|e| e.kind());
        assert_eq!(kind(jobs.delete(b)), Err(ErrorKind::JobRunning));
        assert_eq!(kind(jobs.delete(a)), Err(ErrorKind::JobNotFound));
    }

    #[test]
    fn stop_request_on_a_finished_job_is_refused() {
        let (jobs, _) = Jobs::load(None, Duration::from_secs(60));
        let a = jobs.add(rec()).expect("add");
        jobs.finish(a, JOB_STATE_COMPLETED, None);
        assert_eq!(
            jobs.request_stop(a, JOB_STATE_TERMINATED, Duration::ZERO),
            StopOutcome::NotRunning
        );
        jobs.finish(a, JOB_STATE_EXCEPTION, None);
        assert_eq!(jobs.get(a).map(|j| j.state), Some(JOB_STATE_COMPLETED));
    }
}
