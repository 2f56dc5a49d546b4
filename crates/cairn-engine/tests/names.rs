//! The name indexes of a pool and of `Storage` stay exact through create, snapshot, rename,
//! delete, restore and reopen (clean and after a crash): every live name is found, every freed
//! name is free again, a taken name is refused in every pool of the daemon.

mod support;
use support::OnePool;

use std::sync::Arc;

use cairn_engine::{ErrorKind, Pool, PoolOptions, Storage, VolumeOptions};
use cairn_io::MemDevice;

fn opts() -> PoolOptions {
    PoolOptions {
        commit_interval: None,
        node_cache_bytes: 1 << 20,
        preallocate: false,
    }
}

/// Every name in `live` resolves to a volume of that name; every name in `free` to none.
fn assert_names(p: &OnePool, live: &[&str], free: &[&str]) {
    for n in live {
        let v = p.volume_by_name(n).unwrap_or_else(|| panic!("{n} is live"));
        assert_eq!(v.name, *n);
        assert_eq!(p.volume(v.id).unwrap().name, *n);
    }
    for n in free {
        assert!(p.volume_by_name(n).is_none(), "{n} is free");
    }
    let mut listed: Vec<String> = p.volumes().into_iter().map(|v| v.name).collect();
    listed.sort();
    let mut want: Vec<String> = live.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
}

#[test]
fn pool_name_index_follows_every_directory_change_and_reopen() {
    let dev = Arc::new(MemDevice::new(16 << 20));
    let p = support::create(dev.clone(), "p", opts()).unwrap();
    let o = VolumeOptions::default();
    let a = p.create_volume("a", 1 << 20, o.clone()).unwrap();
    let b = p.create_volume("b", 1 << 20, o.clone()).unwrap();
    p.write(a.id, 0, &[1u8; 4096]).unwrap();
    let s = p.snapshot(a.id, "s", o.clone()).unwrap();
    let dup = p.create_volume("s", 1 << 20, o.clone()).unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);
    let dup = p.snapshot(b.id, "a", o.clone()).unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);
    p.rename_volume(a.id, "c").unwrap();
    p.rename_volume(b.id, "b").unwrap();
    assert_eq!(
        p.rename_volume(b.id, "c").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_names(&p, &["b", "c", "s"], &["a"]);
    p.create_volume("a", 1 << 20, o.clone()).unwrap();
    p.delete_volume(b.id).unwrap();
    p.restore(a.id, s.id).unwrap();
    assert_names(&p, &["a", "c", "s"], &["b"]);
    p.snapshot(s.id, "b", o.clone()).unwrap();
    // A crash image (no close) and a clean reopen rebuild the same index.
    let crashed = Arc::new(dev.snapshot());
    p.close().unwrap();
    for d in [crashed, dev] {
        let p = support::open(d, opts()).unwrap();
        assert_names(&p, &["a", "b", "c", "s"], &["d"]);
        p.delete_volume(p.volume_by_name("c").unwrap().id).unwrap();
        p.create_volume("d", 1 << 20, o.clone()).unwrap();
        assert_names(&p, &["a", "b", "d", "s"], &["c"]);
        p.close().unwrap();
    }
}

#[test]
fn storage_refuses_a_name_any_of_its_pools_holds() {
    let st = Storage::new();
    for name in ["p0", "p1"] {
        let dev = Arc::new(MemDevice::new(16 << 20));
        st.add_pool(Pool::create(dev, name, opts()).unwrap())
            .unwrap();
    }
    let o = VolumeOptions::default();
    let (_, x) = st.create_volume("p0", "x", 1 << 20, o.clone()).unwrap();
    let (_, y) = st.create_volume("p1", "y", 1 << 20, o.clone()).unwrap();
    let clash = st.create_volume("p1", "x", 1 << 20, o.clone()).unwrap_err();
    assert_eq!(clash.kind(), ErrorKind::AlreadyExists);
    let clash = st.snapshot(x.id, "y", o.clone()).unwrap_err();
    assert_eq!(clash.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        st.rename_volume(y.id, "x").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    st.rename_volume(x.id, "z").unwrap();
    assert_eq!(st.find_volume("z").unwrap().1.id, x.id);
    assert!(st.find_volume("x").is_none());
    st.delete_volume(y.id).unwrap();
    let (p, _) = st.create_volume("p0", "y", 1 << 20, o).unwrap();
    assert_eq!(p.name(), "p0");
    assert_eq!(st.find_volume("y").unwrap().0.name(), "p0");
    st.close().unwrap();
}
