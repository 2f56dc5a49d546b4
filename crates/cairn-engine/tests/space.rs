//! Space consumed per volume (`Pool::space_consumed`, `Pool::space_report`): each data block is
//! charged once — to the live volume that alone holds it, else to its family's oldest live
//! volume, else to reclaim — so the charges plus what is being reclaimed are the pool's data
//! blocks. Checked against a reference model that gives every written block a version of its
//! own and lets snapshots share versions, after writes, overwrites in place and redirected,
//! snapshots, clones written to, restores, trims, deletes and reclaim, and a reopen.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cairn_engine::{PoolOptions, VolumeId, VolumeOptions};
use cairn_io::MemDevice;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BS: u64 = 4096;
const VOLUME_BLOCKS: u64 = 64;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// A volume of the reference model: the version each mapped block holds, and its family.
#[derive(Clone)]
struct Vol {
    id: VolumeId,
    /// Creation order: the oldest live member of a family is charged with what it shares.
    order: u64,
    family: u64,
    blocks: BTreeMap<u64, u64>,
}

struct Harness {
    pool: support::OnePool,
    dev: Arc<MemDevice>,
    vols: Vec<Vol>,
    next: u64,
}

impl Harness {
    fn new() -> Harness {
        let dev = Arc::new(MemDevice::new(64 << 20));
        let pool = support::create(dev.clone(), "p", opts()).expect("create");
        Harness {
            pool,
            dev,
            vols: Vec::new(),
            next: 1,
        }
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn create(&mut self) -> usize {
        let n = self.fresh();
        let size = VOLUME_BLOCKS * BS;
        let info = self
            .pool
            .create_volume(&format!("v{n}"), size, VolumeOptions::default())
            .expect("create volume");
        self.vols.push(Vol {
            id: info.id,
            order: n,
            family: n,
            blocks: BTreeMap::new(),
        });
        self.vols.len() - 1
    }

    fn snapshot(&mut self, i: usize) -> usize {
        let n = self.fresh();
        let info = self
            .pool
            .snapshot(self.vols[i].id, &format!("s{n}"), VolumeOptions::default())
            .expect("snapshot");
        let mut v = self.vols[i].clone();
        (v.id, v.order) = (info.id, n);
        self.vols.push(v);
        self.vols.len() - 1
    }

    /// Writes `blocks` blocks from `first`, each with new contents (a version of its own).
    fn write(&mut self, i: usize, first: u64, blocks: u64) {
        let tag = self.fresh();
        let data: Vec<u8> = (0..blocks * BS).map(|b| (tag + b / BS) as u8 | 1).collect();
        self.pool
            .write(self.vols[i].id, first * BS, &data)
            .expect("write");
        for b in first..first + blocks {
            let version = self.fresh();
            self.vols[i].blocks.insert(b, version);
        }
    }

    fn trim(&mut self, i: usize, first: u64, blocks: u64) {
        self.pool
            .trim(self.vols[i].id, first * BS, blocks * BS)
            .expect("trim");
        for b in first..first + blocks {
            self.vols[i].blocks.remove(&b);
        }
    }

    fn restore(&mut self, i: usize, from: usize) {
        self.pool
            .restore(self.vols[i].id, self.vols[from].id)
            .expect("restore");
        self.vols[i].blocks = self.vols[from].blocks.clone();
        // It shares the other's blocks from here, not its old ones: it joins that family.
        self.vols[i].family = self.vols[from].family;
    }

    fn delete(&mut self, i: usize) {
        self.pool.delete_volume(self.vols[i].id).expect("delete");
        self.vols.remove(i);
    }

    /// The charges the rule gives, in blocks, by volume.
    fn expected(&self) -> HashMap<VolumeId, u64> {
        let mut holders: HashMap<u64, HashSet<usize>> = HashMap::new();
        for (i, v) in self.vols.iter().enumerate() {
            for &version in v.blocks.values() {
                holders.entry(version).or_default().insert(i);
            }
        }
        let mut out: HashMap<VolumeId, u64> = self.vols.iter().map(|v| (v.id, 0)).collect();
        for held_by in holders.values() {
            let charged = if held_by.len() == 1 {
                *held_by.iter().next().expect("one")
            } else {
                let family = self.vols[*held_by.iter().next().expect("one")].family;
                (0..self.vols.len())
                    .filter(|&j| self.vols[j].family == family)
                    .min_by_key(|&j| self.vols[j].order)
                    .expect("a live member")
            };
            *out.get_mut(&self.vols[charged].id).expect("live") += 1;
        }
        out
    }

    /// After reclaim: the charges are the model's, every query agrees, and they add up to the
    /// pool's data blocks.
    fn verify(&self) {
        self.pool.wait_reclaim().expect("reclaim");
        self.verify_sum();
        let want = self.expected();
        let report = self.pool.space_report().expect("report");
        assert_eq!(report.reclaiming_bytes, 0, "nothing left to reclaim");
        let got: HashMap<VolumeId, u64> = report
            .volumes
            .iter()
            .map(|&(id, bytes)| (id, bytes / BS))
            .collect();
        assert_eq!(got, want, "charges by volume, in blocks");
        for v in &self.vols {
            let one = self.pool.space_consumed(v.id).expect("one volume");
            assert_eq!(one, want[&v.id] * BS, "the single-volume query agrees");
        }
    }

    /// Any time: the charges and what is being reclaimed add up to the pool's data blocks, and
    /// the figures kept since the last query are those a new walk finds.
    fn verify_sum(&self) {
        let (kept, walked) = self.pool.space_report_kept_and_walked().expect("report");
        let charged: u64 = kept.volumes.iter().map(|v| v.1).sum();
        assert_eq!(
            charged + kept.reclaiming_bytes,
            kept.data_bytes_used,
            "every data block is charged once"
        );
        assert_eq!(walked, kept, "the figures kept are those a new walk finds");
    }
}

#[test]
fn charges_follow_writes_snapshots_overwrites_deletes_and_reclaim() {
    let mut h = Harness::new();
    let v = h.create();
    h.write(v, 0, 16);
    h.verify();
    let consumed = |h: &Harness, i: usize| h.pool.space_consumed(h.vols[i].id).unwrap() / BS;
    assert_eq!(consumed(&h, v), 16);
    h.pool.flush().unwrap();
    h.write(v, 4, 4); // in place: exclusive, and mapped in the last commit
    h.write(v, 4, 2); // redirected: allocated in the open transaction
    h.verify();
    assert_eq!(consumed(&h, v), 16);
    let s1 = h.snapshot(v);
    h.verify();
    assert_eq!(consumed(&h, s1), 0, "a snapshot costs nothing");
    // Redirected: the snapshot alone holds the old blocks now, v alone the new ones, and the
    // 12 blocks both hold are charged to v, the family's oldest.
    h.write(v, 0, 4);
    h.verify();
    assert_eq!((consumed(&h, v), consumed(&h, s1)), (16, 4));
    let s2 = h.snapshot(v);
    h.write(v, 2, 4);
    h.write(s2, 10, 3); // a writable snapshot's own blocks are its own
    h.verify();
    // Its 3 blocks, and blocks 2 and 3 as v had them when s2 was taken (s1 predates them).
    assert_eq!(consumed(&h, s2), 5);
    h.trim(v, 0, 8);
    h.verify_sum();
    h.verify();
    // The oldest live member is now s1 (index 0): it takes what the family shares.
    h.delete(v);
    h.verify_sum();
    h.verify();
    let (s1, s2) = (0, 1);
    let w = h.create();
    h.write(w, 0, 8);
    h.restore(s2, s1);
    h.verify();
    assert_eq!(consumed(&h, s2), 0, "restored: it shares everything");
    // Restoring from another family moves the volume to that family.
    h.restore(w, s1);
    h.verify();
    h.write(w, 0, 8);
    h.delete(s1);
    h.delete(0);
    h.verify_sum();
    h.verify();
    assert_eq!(h.vols.len(), 1);
    assert_eq!(consumed(&h, 0), h.pool.info().data_bytes_used / BS);
}

#[test]
fn charges_survive_a_reopen_and_random_sequences() {
    let mut h = Harness::new();
    let mut rng = SmallRng::seed_from_u64(16);
    h.create();
    for step in 0..300 {
        let i = rng.gen_range(0..h.vols.len());
        match rng.gen_range(0..10) {
            0 if h.vols.len() < 12 => {
                h.snapshot(i);
            }
            1 if h.vols.len() > 1 => h.delete(i),
            2 => {
                let first = rng.gen_range(0..VOLUME_BLOCKS - 8);
                h.trim(i, first, rng.gen_range(1..8));
            }
            3 if h.vols.len() < 12 => {
                h.create();
            }
            4 => {
                let from = rng.gen_range(0..h.vols.len());
                if from != i {
                    h.restore(i, from);
                }
            }
            5 => h.pool.flush().expect("flush"),
            _ => {
                let first = rng.gen_range(0..VOLUME_BLOCKS - 8);
                h.write(i, first, rng.gen_range(1..8));
            }
        }
        if step % 10 == 0 {
            h.verify_sum();
        }
        if step % 25 == 0 {
            h.verify();
        }
    }
    h.verify();
    h.pool.close().expect("close");
    h.pool = support::open(h.dev.clone(), opts()).expect("reopen");
    h.verify();
}
