//! The target node shared by every connection: its name and login policy, the LUN table of the
//! no-view default, the registry of live sessions (for reinstatement and unit attentions) and
//! the server-wide in-flight byte budget, and the masking views ([`Access`]) sessions see.
//!
//! Invariants: one live session per (initiator name, ISID) — a login with the ISID of a live
//! session closes the old one first; a session that ends (or is replaced) releases the SPC-2
//! reservations of its nexus; TSIHs are never 0; the LUN table changes only through
//! [`Target::luns`], which persists it before any session sees the change and drops the
//! reservation state and write locks of volumes no longer exported (a lock a session still
//! holds stays until it lets it go), so that state is bounded by the live volumes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cairn_export::{Exports, VolumeInfo};
use tokio::sync::{watch, Notify, Semaphore};

use crate::buffers::Buffers;
use crate::limits::{RESETS_MAX, SERVER_IN_FLIGHT_BYTES_MAX, UNIT_ATTENTIONS_MAX};
use crate::login::LoginConfig;
use crate::lunmap::LunMap;
use crate::pr::{Nexus, Reservations};
use crate::scsi::sense::Sense;
use crate::views::Access;

/// A reset another session asked of this one, by volume (LUN numbers differ between initiators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// LOGICAL UNIT RESET of the volume (hex id): its tasks are aborted, a unit attention follows.
    Unit(String),
    /// TARGET WARM RESET: every logical unit.
    Target,
    /// CLEAR TASK SET of the volume: its tasks are aborted; COMMANDS CLEARED BY ANOTHER INITIATOR
    /// if there were any.
    Cleared(String),
    /// PREEMPT AND ABORT took this nexus's registration: its tasks on the volume are aborted.
    Preempted(String),
}

/// Unit attentions waiting for one session, per LUN, and the resets it has yet to apply.
#[derive(Debug, Default)]
pub(crate) struct Attentions {
    per_lun: HashMap<u16, VecDeque<Sense>>,
    resets: VecDeque<Reset>,
}

impl Attentions {
    fn reset(&mut self, r: Reset) {
        if self.resets.contains(&r) {
            return;
        }
        if self.resets.len() == RESETS_MAX {
            self.resets.pop_front();
        }
        self.resets.push_back(r);
    }

    /// The resets to apply, oldest first.
    pub fn take_resets(&mut self) -> VecDeque<Reset> {
        std::mem::take(&mut self.resets)
    }

    pub fn push(&mut self, lun: u16, s: Sense) {
        let q = self.per_lun.entry(lun).or_default();
        if q.contains(&s) {
            return;
        }
        if q.len() == UNIT_ATTENTIONS_MAX {
            q.pop_front();
        }
        q.push_back(s);
    }

    pub fn take(&mut self, lun: u16) -> Option<Sense> {
        self.per_lun.get_mut(&lun)?.pop_front()
    }

    /// Drops one pending condition (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED).
    pub fn remove(&mut self, lun: u16, s: Sense) {
        if let Some(q) = self.per_lun.get_mut(&lun) {
            q.retain(|p| *p != s);
        }
    }

    pub fn clear(&mut self, lun: u16) {
        self.per_lun.remove(&lun);
    }
}

struct SessionEntry {
    tsih: u16,
    close: watch::Sender<bool>,
    attentions: Arc<Mutex<Attentions>>,
    wake: Arc<Notify>,
}

/// A registered session, as its connection holds it.
pub(crate) struct Registration {
    pub tsih: u16,
    pub close: watch::Receiver<bool>,
    pub attentions: Arc<Mutex<Attentions>>,
    /// Signalled when another session queued a [`Reset`] for this one.
    pub wake: Arc<Notify>,
}

pub(crate) struct Target {
    pub login: Arc<LoginConfig>,
    pub exports: Arc<dyn Exports>,
    pub bytes: Arc<Semaphore>,
    /// Command data buffers, reused.
    pub buffers: Arc<Buffers>,
    /// Idle time after which the target pings an initiator with a NOP-In.
    pub nop_interval: std::time::Duration,
    /// Persistent reservations of every logical unit, shared by all sessions.
    pub reservations: Reservations,
    lun_map_path: PathBuf,
    lun_map: Mutex<LunMap>,
    /// The masking views; `port` is the target port sessions log in through.
    access: Arc<Access>,
    port: String,
    lun_generation: AtomicU64,
    sessions: Mutex<HashMap<(String, [u8; 6]), SessionEntry>>,
    /// Per volume: writes hold it shared, COMPARE AND WRITE exclusive.
    write_locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
    next_tsih: AtomicU16,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nexus(initiator: &str, isid: [u8; 6]) -> Nexus {
    Nexus {
        initiator: initiator.to_string(),
        isid,
    }
}

pub(crate) fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Target {
    pub fn new(
        login: LoginConfig,
        exports: Arc<dyn Exports>,
        lun_map_path: PathBuf,
        (access, port, reservations): (Arc<Access>, String, Reservations),
        nop_interval: std::time::Duration,
    ) -> std::io::Result<Target> {
        let lun_map = LunMap::load(&lun_map_path)?;
        let target = Target {
            login: Arc::new(login),
            exports,
            bytes: Arc::new(Semaphore::new(SERVER_IN_FLIGHT_BYTES_MAX as usize)),
            buffers: Arc::new(Buffers::new()),
            nop_interval,
            reservations,
            lun_map_path,
            lun_map: Mutex::new(lun_map),
            access,
            port,
            lun_generation: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            write_locks: Mutex::new(HashMap::new()),
            next_tsih: AtomicU16::new(1),
        };
        target.luns()?;
        Ok(target)
    }

    /// The serial number (VPD 0x80) of a volume: its id in hex.
    pub fn serial(info: &VolumeInfo) -> String {
        hex(&info.id)
    }

    /// The current LUN table, sorted by LUN, after bringing the map up to date with the exports;
    /// the reservation state of volumes no longer exported is dropped (only after a complete
    /// listing: see [`cairn_export::Listing`]). The listing is taken
    /// under the map's lock, so listings are applied in the order they were made (a state
    /// made on a volume one listing shows is never dropped by an older listing).
    pub fn luns(&self) -> std::io::Result<Vec<(u16, VolumeInfo)>> {
        let mut map = lock(&self.lun_map);
        let listing = self.exports.listing().map_err(std::io::Error::other)?;
        let volumes = listing.volumes;
        let ids: Vec<String> = volumes.iter().map(|v| hex(&v.id)).collect();
        // A backend that could not be listed keeps its volumes' reservations, locks and LUNs.
        if listing.complete {
            self.reservations.retain(&ids)?;
            self.retain_write_locks(&ids);
        }
        if map.update(&ids, listing.complete) {
            map.save(&self.lun_map_path)?;
            self.lun_generation.fetch_add(1, Ordering::SeqCst);
        }
        let mut table: Vec<(u16, VolumeInfo)> = volumes
            .into_iter()
            .zip(ids)
            .filter_map(|(v, id)| map.luns.get(&id).map(|&lun| (lun, v)))
            .collect();
        table.sort_by_key(|(lun, _)| *lun);
        Ok(table)
    }

    /// The LUNs `initiator` sees: the no-view default, or exactly those of its masking views
    /// (volumes a view names that do not exist are left out).
    pub fn luns_for(&self, initiator: &str) -> std::io::Result<Vec<(u16, VolumeInfo)>> {
        let all = self.luns()?;
        let Some(mapped) = self.access.luns_of(initiator, &self.port) else {
            return Ok(all);
        };
        Ok(mapped
            .into_iter()
            .filter_map(|(lun, id)| {
                all.iter()
                    .find(|(_, v)| hex(&v.id) == id)
                    .map(|(_, v)| (lun, v.clone()))
            })
            .collect())
    }

    /// Drops the write locks of volumes no longer exported, but never one a session still
    /// holds: every command on a volume takes the same lock, so a volume that is listed again
    /// (its pool back) still has one lock.
    fn retain_write_locks(&self, live: &[String]) {
        let live: HashSet<&str> = live.iter().map(String::as_str).collect();
        lock(&self.write_locks)
            .retain(|id, l| live.contains(id.as_str()) || Arc::strong_count(l) > 1);
    }

    /// The write lock of volume `id` (hex), one for every session.
    pub fn write_lock(&self, id: &str) -> Arc<RwLock<()>> {
        lock(&self.write_locks)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Changes each time the LUN table or the masking views change (both counters only grow).
    pub fn lun_generation(&self) -> u64 {
        self.lun_generation.load(Ordering::SeqCst) + self.access.generation()
    }

    /// Registers a new session, closing a live one of the same initiator and ISID.
    pub fn register(&self, initiator: &str, isid: [u8; 6]) -> Registration {
        let mut tsih = self.next_tsih.fetch_add(1, Ordering::Relaxed);
        if tsih == 0 {
            tsih = self.next_tsih.fetch_add(1, Ordering::Relaxed);
        }
        let (close, rx) = watch::channel(false);
        let attentions = Arc::new(Mutex::new(Attentions::default()));
        let wake = Arc::new(Notify::new());
        let entry = SessionEntry {
            tsih,
            close,
            attentions: attentions.clone(),
            wake: wake.clone(),
        };
        if let Some(old) = lock(&self.sessions).insert((initiator.to_string(), isid), entry) {
            tracing::info!(initiator, old_tsih = old.tsih, "iSCSI session reinstated");
            let _ = old.close.send(true);
            self.reservations.nexus_lost(&nexus(initiator, isid));
        }
        Registration {
            tsih,
            close: rx,
            attentions,
            wake,
        }
    }

    /// Removes a session that ended (unless a reinstatement already replaced it).
    pub fn unregister(&self, initiator: &str, isid: [u8; 6], tsih: u16) {
        let mut sessions = lock(&self.sessions);
        let key = (initiator.to_string(), isid);
        if sessions.get(&key).is_some_and(|e| e.tsih == tsih) {
            sessions.remove(&key);
            drop(sessions);
            self.reservations.nexus_lost(&nexus(initiator, isid));
        }
    }

    /// True if a session with this TSIH is live.
    pub fn has_tsih(&self, tsih: u16) -> bool {
        lock(&self.sessions).values().any(|e| e.tsih == tsih)
    }

    /// Queues `reset` for every session but `except` and wakes them to apply it.
    pub fn reset_others(&self, reset: &Reset, except: u16) {
        for e in lock(&self.sessions).values().filter(|e| e.tsih != except) {
            lock(&e.attentions).reset(reset.clone());
            e.wake.notify_one();
        }
    }

    /// Queues `reset` for the session of I_T nexus `n`, if it is logged in.
    pub fn reset_nexus(&self, n: &Nexus, reset: Reset) {
        let sessions = lock(&self.sessions);
        if let Some(e) = sessions.get(&(n.initiator.clone(), n.isid)) {
            lock(&e.attentions).reset(reset);
            e.wake.notify_one();
        }
    }

    /// TARGET COLD RESET: every session is closed (each after the responses it has queued).
    pub fn close_all(&self) {
        for e in lock(&self.sessions).values() {
            let _ = e.close.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};

    use super::*;
    use crate::login::Auth;

    fn target(dir: &std::path::Path, storage: Arc<Storage>) -> Target {
        let login = LoginConfig {
            target_name: "iqn.2026-01.org.cairn:t".into(),
            auth: Auth::default(),
        };
        let access = Access::open(dir.join("views.json"), &[], Vec::new(), storage.clone());
        let reservations = Reservations::load(&dir.join("reservations.json")).unwrap();
        let access = (Arc::new(access.unwrap()), String::new(), reservations);
        Target::new(
            login,
            storage,
            dir.join("luns.json"),
            access,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn locked(t: &Target) -> Vec<String> {
        let mut ids: Vec<String> = lock(&t.write_locks).keys().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_deleted_volume_loses_its_write_lock_once_no_session_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::new());
        let dev = Arc::new(cairn_io::MemDevice::new(64 << 20));
        storage
            .add_pool(Pool::create(dev, "p", PoolOptions::default()).unwrap())
            .unwrap();
        let volumes: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let opts = VolumeOptions::default();
                storage
                    .create_volume("p", name, 1 << 20, opts)
                    .unwrap()
                    .1
                    .id
            })
            .collect();
        let ids: Vec<String> = volumes.iter().map(|v| v.to_string()).collect();
        let t = target(dir.path(), storage.clone());
        let held = t.write_lock(&ids[1]);
        drop(t.write_lock(&ids[0]));
        drop(t.write_lock(&ids[2]));
        for v in &volumes[..2] {
            storage.delete_volume(*v).unwrap();
        }
        t.luns().unwrap();
        assert_eq!(locked(&t), [ids[1].clone(), ids[2].clone()], "b is held");
        let again = t.write_lock(&ids[1]);
        assert!(Arc::ptr_eq(&held, &again), "one lock while it is held");
        drop((held, again));
        t.luns().unwrap();
        assert_eq!(locked(&t), [ids[2].clone()]);
    }
}
