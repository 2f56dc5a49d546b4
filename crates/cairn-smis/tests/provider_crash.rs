//! Crash replay of the cross-pool copy: both pools live on recording devices while a copy job
//! runs; the test samples consistent cuts of the two device logs (and the jobs file as it was at
//! that moment) all through the job, rebuilds the crash images (unflushed writes dropped, kept,
//! torn or reordered), restarts the array on them and checks that the job ended as Completed with
//! the point-in-time data or as Exception with nothing left behind, and that both pools pass
//! `check` with no leaked space.

use std::sync::Arc;

use cairn_cim::{MethodCall, Provider, Value};
use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::{CrashMode, CrashPoint, MemDevice, RecordingDevice};
use cairn_smis::interop::CAIRN_NAMESPACE;
use cairn_smis::{ArrayOptions, ArrayProvider};

const MIB: u64 = 1 << 20;
const POOL_BYTES: u64 = 48 * MIB;
const SOURCE_BYTES: u64 = 8 * MIB;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// One consistent moment of the run: how far each device log had got, and the jobs file then.
struct Cut {
    ops: [usize; 2],
    jobs_file: Vec<u8>,
}

fn path_of(p: &ArrayProvider, class: &str, key: &str, value: &str) -> cairn_cim::InstancePath {
    p.enumerate_instances(CAIRN_NAMESPACE, class)
        .expect("enumerate")
        .into_iter()
        .filter_map(|i| i.path)
        .find(|path| {
            path.key(key)
                .is_some_and(|k| *k == cairn_cim::KeyValue::String(value.into()))
        })
        .expect("instance")
}

#[test]
fn a_crash_at_any_point_of_a_copy_ends_the_job_and_leaks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs_path = dir.path().join("jobs.json");
    let devs = [
        Arc::new(RecordingDevice::new(MemDevice::new(POOL_BYTES))),
        Arc::new(RecordingDevice::new(MemDevice::new(POOL_BYTES))),
    ];
    let storage = Arc::new(Storage::new());
    for (dev, name) in devs.iter().zip(["pool0", "pool1"]) {
        let pool = Pool::create(dev.clone(), name, PoolOptions::default()).expect("pool");
        storage.add_pool(pool).expect("add");
    }
    let (pool0, src) = storage
        .create_volume("pool0", "src", SOURCE_BYTES, VolumeOptions::default())
        .expect("volume");
    let before = pattern(7, SOURCE_BYTES as usize);
    pool0.write(src.id, 0, &before).expect("write");
    pool0.flush().expect("flush");

    let mut opts = ArrayOptions::new("CRASH");
    opts.jobs_path = Some(jobs_path.clone());
    opts.copy_rate_bytes_per_sec = Some(8 * MIB);
    let array = ArrayProvider::new(storage.clone(), opts);
    let rs = path_of(
        &array,
        "Cairn_ReplicationService",
        "CreationClassName",
        "Cairn_ReplicationService",
    );
    let params = vec![
        ("ElementName".to_owned(), Some(Value::string("copy"))),
        ("SyncType".to_owned(), Some(Value::Uint16(7))),
        (
            "SourceElement".to_owned(),
            Some(Value::Reference(path_of(
                &array,
                "Cairn_StorageVolume",
                "DeviceID",
                &src.id.to_string(),
            ))),
        ),
        (
            "TargetPool".to_owned(),
            Some(Value::Reference(path_of(
                &array,
                "Cairn_StoragePool",
                "InstanceID",
                "CAIRN:POOL:pool1",
            ))),
        ),
    ];
    let mut cuts = vec![Cut {
        ops: [devs[0].ops_len(), devs[1].ops_len()],
        jobs_file: std::fs::read(&jobs_path).unwrap_or_default(),
    }];
    let call = MethodCall {
        namespace: CAIRN_NAMESPACE,
        target: Some(&rs),
        class_name: "Cairn_ReplicationService",
        method: "CreateElementReplica",
        params: &params,
    };
    let result = array.invoke_method(&call).expect("invoke");
    assert_eq!(result.return_value, Value::Uint32(4096), "{result:?}");
    let job = array.jobs().list()[0].id;
    // Sample cuts while the copy runs (it takes about a second at 8 MiB/s).
    loop {
        let finished = array.jobs().get(job).is_some_and(|j| j.is_finished());
        let jobs_file = std::fs::read(&jobs_path).expect("jobs file");
        cuts.push(Cut {
            ops: [devs[0].ops_len(), devs[1].ops_len()],
            jobs_file,
        });
        if finished {
            break;
        }
        array
            .jobs()
            .wait_finished(job, std::time::Duration::from_millis(40));
    }
    assert_eq!(array.jobs().get(job).map(|j| j.state), Some(7));
    for p in storage.pools() {
        p.flush().expect("flush");
    }
    cuts.push(Cut {
        ops: [devs[0].ops_len(), devs[1].ops_len()],
        jobs_file: std::fs::read(&jobs_path).expect("jobs file"),
    });
    assert!(cuts.len() >= 5, "too few cuts sampled: {}", cuts.len());

    let (mut completed, mut failed) = (0, 0);
    for (i, cut) in cuts.iter().enumerate() {
        for mode in CrashMode::ALL {
            let seed = i as u64 * 31 + mode as u64;
            let restart = tempfile::tempdir().expect("tempdir");
            let jobs = restart.path().join("jobs.json");
            if !cut.jobs_file.is_empty() {
                std::fs::write(&jobs, &cut.jobs_file).expect("jobs file");
            }
            let storage = Arc::new(Storage::new());
            for (k, dev) in devs.iter().enumerate() {
                let image = dev.image_at(CrashPoint::new(cut.ops[k], seed, mode));
                let pool = Pool::open(Arc::new(image), PoolOptions::default())
                    .unwrap_or_else(|e| panic!("cut {i} {mode:?}: pool {k} does not open: {e}"));
                storage.add_pool(pool).expect("add");
            }
            let mut opts = ArrayOptions::new("CRASH");
            opts.jobs_path = Some(jobs.clone());
            let array = ArrayProvider::new(storage.clone(), opts);
            let what = format!("cut {i} of {} ({mode:?})", cuts.len());
            let volumes: Vec<_> = storage.pools().iter().flat_map(|p| p.volumes()).collect();
            assert!(
                volumes.iter().all(|v| !v.hidden),
                "{what}: hidden leftovers {volumes:?}"
            );
            let state = array.jobs().list().first().map(|j| j.state);
            match storage.find_volume("copy") {
                Some((pool, v)) => {
                    assert_eq!(pool.name(), "pool1", "{what}");
                    let mut data = vec![0; SOURCE_BYTES as usize];
                    pool.read(v.id, 0, &mut data).expect("read copy");
                    assert!(
                        data == before,
                        "{what}: the copy differs from the point in time"
                    );
                    if state.is_some() {
                        assert_eq!(state, Some(7), "{what}");
                    }
                    completed += 1;
                }
                None => {
                    assert!(
                        matches!(state, None | Some(10)),
                        "{what}: job state {state:?}"
                    );
                    failed += 1;
                }
            }
            for p in storage.pools() {
                p.wait_reclaim().expect("reclaim");
                let report = p.check().expect("check");
                assert!(
                    report.is_clean(),
                    "{what}: pool {} not clean: {:?}",
                    p.name(),
                    report.findings.len()
                );
            }
            let vols = storage
                .pools()
                .iter()
                .map(|p| p.info().volume_count)
                .sum::<usize>();
            assert_eq!(
                vols,
                1 + usize::from(storage.find_volume("copy").is_some()),
                "{what}"
            );
        }
    }
    assert!(
        completed > 0 && failed > 0,
        "cuts on both sides: {completed} completed, {failed} failed"
    );
}
