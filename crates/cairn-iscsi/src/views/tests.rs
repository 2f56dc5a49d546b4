//! The access model's changes and refusals, over real engine exports and a real model file.

use std::sync::Arc;

use cairn_engine::{Pool, PoolOptions, Storage, VolumeOptions};
use cairn_export::access::{Change, GroupKind, HostAccess, TargetPort, View};
use cairn_export::ErrorKind;

use super::*;

const PORT: &str = "iqn.2026-01.org.cairn:t,t,0x0001";
const HOST: &str = "iqn.2026-01.org.cairn.test:host";

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    storage: Arc<Storage>,
    ids: Vec<String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::new());
    let dev = Arc::new(cairn_io::MemDevice::new(64 << 20));
    let pool = Pool::create(dev, "p", PoolOptions::default()).unwrap();
    storage.add_pool(pool).unwrap();
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let (_, info) = storage
            .create_volume("p", name, 1 << 20, VolumeOptions::default())
            .unwrap();
        ids.push(info.id.to_string());
    }
    Fixture {
        path: dir.path().join("iscsi-views.json"),
        _dir: dir,
        storage,
        ids,
    }
}

fn ports() -> Vec<TargetPort> {
    let login = crate::login::LoginConfig {
        target_name: "iqn.2026-01.org.cairn:t".into(),
        auth: Default::default(),
    };
    vec![TargetPort {
        name: PORT.into(),
        addr: "127.0.0.1:3260".parse().unwrap(),
        login: login.offer(),
        target_name: login.target_name,
    }]
}

fn open(f: &Fixture, seed: &[SeedView]) -> cairn_export::Result<Access> {
    Access::open(f.path.clone(), seed, ports(), f.storage.clone())
}

fn group(kind: GroupKind, name: &str, members: &[&str]) -> Change {
    Change::CreateGroup {
        kind,
        name: name.into(),
        members: members.iter().map(|s| s.to_string()).collect(),
    }
}

/// One view "v" giving volume `a` to HOST through the port.
fn mapped(f: &Fixture) -> Access {
    let access = open(f, &[]).unwrap();
    access.apply(Change::AddInitiator(HOST.into())).unwrap();
    access
        .apply(group(GroupKind::Initiator, "ig", &[HOST]))
        .unwrap();
    access
        .apply(group(GroupKind::Target, "tg", &[PORT]))
        .unwrap();
    access
        .apply(group(GroupKind::Device, "dg", &[&f.ids[0]]))
        .unwrap();
    access
        .apply(Change::CreateView(View {
            name: "v".into(),
            initiator_group: "ig".into(),
            target_group: "tg".into(),
            device_group: "dg".into(),
        }))
        .unwrap();
    access
}

#[test]
fn a_view_maps_its_volumes_and_survives_a_reopen() {
    let f = fixture();
    let access = open(&f, &[]).unwrap();
    assert_eq!(access.luns_of(HOST, PORT), None, "no view: the default");
    drop(access);
    let access = mapped(&f);
    let expect: BTreeMap<u16, String> = [(0, f.ids[0].clone())].into();
    assert_eq!(
        access.luns_of(&HOST.to_uppercase(), PORT),
        Some(expect.clone())
    );
    assert_eq!(access.luns_of("iqn.x:other", PORT), Some(BTreeMap::new()));
    assert_eq!(access.luns_of(HOST, "other-port"), Some(BTreeMap::new()));
    let generation = access.generation();
    drop(access);
    let again = open(&f, &[]).unwrap();
    assert_eq!(again.luns_of(HOST, PORT), Some(expect));
    assert!(generation > 0);
}

#[test]
fn refused_changes_change_nothing() {
    let f = fixture();
    let access = mapped(&f);
    let before = access.model();
    let file = std::fs::read(&f.path).unwrap();
    let g = access.generation();
    let kind = |c: Change| access.apply(c).unwrap_err().kind();
    let add = |kind, name: &str, members: &[&str], luns: Vec<u16>| Change::AddMembers {
        kind,
        name: name.into(),
        members: members.iter().map(|s| s.to_string()).collect(),
        luns,
    };
    assert_eq!(
        kind(add(GroupKind::Initiator, "ig", &["iqn.x:unknown"], vec![])),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(add(GroupKind::Device, "dg", &["00ff"], vec![])),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(add(GroupKind::Device, "dg", &[&f.ids[1]], vec![0])),
        ErrorKind::InUse,
        "LUN 0 is used in the view"
    );
    assert_eq!(
        kind(Change::RemoveMembers {
            kind: GroupKind::Device,
            name: "dg".into(),
            members: vec![f.ids[1].clone()],
        }),
        ErrorKind::InvalidArgument,
        "hiding a volume that is not exposed"
    );
    assert_eq!(
        kind(Change::DeleteGroup {
            kind: GroupKind::Device,
            name: "dg".into(),
            force: false,
        }),
        ErrorKind::InUse
    );
    assert_eq!(kind(Change::RemoveInitiator(HOST.into())), ErrorKind::InUse);
    assert_eq!(
        kind(group(GroupKind::Initiator, "ig", &[])),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind(Change::DeleteView("nope".into())), ErrorKind::NotFound);
    assert_eq!(access.model(), before);
    assert_eq!(std::fs::read(&f.path).unwrap(), file);
    assert_eq!(access.generation(), g);
}

#[test]
fn a_second_view_cannot_give_an_initiator_a_lun_twice() {
    let f = fixture();
    let access = mapped(&f);
    access
        .apply(Change::CreateGroup {
            kind: GroupKind::Device,
            name: "dg2".into(),
            members: vec![f.ids[1].clone()],
        })
        .unwrap();
    // dg2 alone gave volume b LUN 0: in a view with HOST it would clash with volume a.
    let err = access
        .apply(Change::CreateView(View {
            name: "v2".into(),
            initiator_group: "ig".into(),
            target_group: "tg".into(),
            device_group: "dg2".into(),
        }))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse);
    // Added to the mapped group, it gets the next free LUN.
    access
        .apply(Change::AddMembers {
            kind: GroupKind::Device,
            name: "dg".into(),
            members: vec![f.ids[1].clone()],
            luns: vec![],
        })
        .unwrap();
    assert_eq!(access.luns_of(HOST, PORT).unwrap().len(), 2);
    assert!(access.model().is_mapped(&f.ids[1]));
    // A forced delete of a group in a view deletes the view.
    access
        .apply(Change::DeleteGroup {
            kind: GroupKind::Initiator,
            name: "ig".into(),
            force: true,
        })
        .unwrap();
    assert!(access.model().views.is_empty());
    assert_eq!(access.luns_of(HOST, PORT), None);
}

#[test]
fn the_config_seeds_only_a_missing_file() {
    let f = fixture();
    let seed = vec![SeedView {
        name: "s".into(),
        initiators: vec![HOST.to_uppercase()],
        luns: vec![SeedLun {
            volume: "b".into(),
            lun: 7,
        }],
    }];
    let access = open(&f, &seed).unwrap();
    let expect: BTreeMap<u16, String> = [(7, f.ids[1].clone())].into();
    assert_eq!(access.luns_of(HOST, PORT), Some(expect));
    access.apply(Change::DeleteView("s".into())).unwrap();
    drop(access);
    let again = open(&f, &seed).unwrap();
    assert_eq!(again.luns_of(HOST, PORT), None, "the file, not the seed");
    let bad = vec![SeedView {
        luns: vec![SeedLun {
            volume: "missing".into(),
            lun: 0,
        }],
        ..seed[0].clone()
    }];
    std::fs::remove_file(&f.path).unwrap();
    assert_eq!(open(&f, &bad).unwrap_err().kind(), ErrorKind::NotFound);
    std::fs::write(&f.path, b"{").unwrap();
    assert!(open(&f, &seed).is_err());
}
