//! Group commit: callers that need what they wrote to be durable (`flush`, a FUA write that is
//! not durable in place) share commits instead of running one each.
//!
//! Every commit is numbered when it begins: a commit takes the next number here while it holds
//! the I/O gate exclusively, reports when it froze (it lets the gate go then, and writes
//! acknowledged since are not in it), and reports its outcome under that number once it landed
//! or failed. Commits run one at a time (the pool's commit lock, held from the start until the
//! outcome), so they begin and end in number order, and this record (its own mutex, taken after
//! the state lock, never held while waiting for the gate or the state) can be read while a
//! commit runs.
//!
//! The rule: a flush returns `Ok` only once a commit numbered at least its `target` is durable.
//! `target` is asked under the state lock: the commit freezing, if one is (it holds every write
//! acknowledged before the flush, since writes hold the gate shared until they are
//! acknowledged); else, if the open transaction holds nothing (no change, no data written in
//! place since the last freeze), the commit being written, or none at all; else the next
//! commit. A flush whose commit is refused (`NoSpace`, a device error) fails with that commit's
//! error, as every other flush that joined it does; the pool is left as the refused commit
//! leaves it (see `State::commit`). While the commit a flush needs has not begun, one waiting
//! flush leads: it takes the commit lock (after the commit being written, if any, has landed)
//! and the gate, and commits, unless a commit that began meanwhile covered it; the others wait
//! for the outcome.

use parking_lot::{Condvar, Mutex};

use crate::error::{err, Error, ErrorKind, Result};

/// The numbered commits of a pool and the flushes waiting for them.
#[derive(Default)]
pub(crate) struct Commits {
    progress: Mutex<Progress>,
    changed: Condvar,
}

#[derive(Default)]
struct Progress {
    /// The number of the last commit begun (0: none yet).
    begun: u64,
    /// The commit numbered `begun` holds the gate (it has not frozen yet).
    running: bool,
    /// The commit numbered `begun` froze and is being written: writes acknowledged since are
    /// not in it.
    writing: bool,
    /// The last commit that succeeded: everything acknowledged before it began is durable.
    durable: u64,
    /// The last commit that failed, with its error (given to every flush waiting for it).
    failed: Option<(u64, Error)>,
    /// A flush is taking the gate to run the next commit.
    leading: bool,
    /// Flushes waiting for a commit (test hook).
    waiting: usize,
}

/// What a flush waiting for commit `target` does next.
pub(crate) enum Turn<'a> {
    /// It is settled: that commit (or a later one) succeeded, or it failed with this error.
    Settled(Result<()>),
    /// Lead: take the gate and commit; another flush may lead once this is dropped.
    Lead(Leading<'a>),
}

/// A flush leading the next commit.
pub(crate) struct Leading<'a>(&'a Commits);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut p = self.0.progress.lock();
        assert!(p.leading, "a flush leads a commit");
        p.leading = false;
        drop(p);
        self.0.changed.notify_all();
    }
}

/// A commit begun: it ends with [`Ticket::end`], or as failed if it unwinds before (the pool
/// fails then too, see `StateGuard`), so no flush waits for it forever.
pub(crate) struct Ticket<'a> {
    commits: &'a Commits,
    number: Option<u64>,
}

impl Ticket<'_> {
    /// The commit froze and lets the gate go: a flush asking from now on needs the next one.
    pub(crate) fn frozen(&self) {
        let n = self.number.expect("a commit not ended");
        let mut p = self.commits.progress.lock();
        assert!(p.running && p.begun == n, "commit {n} froze while it ran");
        p.running = false;
        p.writing = true;
    }

    pub(crate) fn end(mut self, outcome: &Result<()>) {
        if let Some(n) = self.number.take() {
            self.commits.end(n, outcome);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.number.take() {
            let e = err(ErrorKind::PoolFailed, "a panic inside a commit");
            self.commits.end(n, &Err(e));
        }
    }
}

impl Progress {
    fn settled(&self, target: u64) -> Option<Result<()>> {
        if self.durable >= target {
            return Some(Ok(()));
        }
        match &self.failed {
            Some((n, e)) if *n >= target => Some(Err(e.duplicate())),
            _ => None,
        }
    }
}

impl Commits {
    /// The commit a flush asking now needs, given whether the open transaction holds anything
    /// (changes, or data written in place; asked under the state lock): the one holding the
    /// gate (it includes every write acknowledged before now); else, with nothing open, the
    /// one being written, or none at all (nothing to flush); else the next one.
    pub(crate) fn target(&self, open: bool) -> Option<u64> {
        let p = self.progress.lock();
        if p.running {
            Some(p.begun)
        } else if open {
            Some(p.begun + 1)
        } else if p.writing {
            Some(p.begun)
        } else {
            None
        }
    }

    /// Waits until commit `target` is settled, or until it has not begun and no other flush is
    /// taking the gate for it: then this one leads.
    pub(crate) fn wait(&self, target: u64) -> Turn<'_> {
        let mut p = self.progress.lock();
        loop {
            if let Some(r) = p.settled(target) {
                return Turn::Settled(r);
            }
            if p.begun < target && !p.leading {
                p.leading = true;
                return Turn::Lead(Leading(self));
            }
            p.waiting += 1;
            self.changed.wait(&mut p);
            p.waiting -= 1;
        }
    }

    /// For a leader holding the gate: whether commit `target` is settled already (a commit that
    /// began while it waited for the gate may have covered it). If not, the commit it runs now
    /// is the very one its waiters need.
    pub(crate) fn settled_for_leader(&self, target: u64) -> bool {
        let p = self.progress.lock();
        assert!(
            !p.running && !p.writing,
            "the leader holds the commit lock: no commit runs"
        );
        let settled = p.settled(target).is_some();
        assert!(
            settled || p.begun + 1 == target,
            "commit {} is next, flushes wait for {target}",
            p.begun + 1
        );
        settled
    }

    /// A commit begins (its caller holds the I/O gate exclusively).
    pub(crate) fn begin(&self) -> Ticket<'_> {
        let mut p = self.progress.lock();
        assert!(
            !p.running && !p.writing,
            "commits run one at a time (the commit lock)"
        );
        p.begun += 1;
        p.running = true;
        Ticket {
            commits: self,
            number: Some(p.begun),
        }
    }

    /// Commit `number` ended with `outcome`; the flushes waiting for it learn it.
    fn end(&self, number: u64, outcome: &Result<()>) {
        let mut p = self.progress.lock();
        assert!(
            (p.running || p.writing) && p.begun == number,
            "commit {number} ends as it began"
        );
        p.running = false;
        p.writing = false;
        assert!(number > p.durable, "commits end in number order");
        match outcome {
            Ok(()) => p.durable = number,
            Err(e) => p.failed = Some((number, e.duplicate())),
        }
        drop(p);
        self.changed.notify_all();
    }

    /// Flushes waiting for a commit that another flush or the pool runs.
    pub(crate) fn waiting(&self) -> usize {
        self.progress.lock().waiting
    }
}
