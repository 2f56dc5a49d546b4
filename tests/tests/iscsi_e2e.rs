//! The iSCSI target end to end, with real initiators against the real daemon: libiscsi's
//! conformance suite (`iscsi-test-cu`, one process per family), `iscsi-ls`, `iscsi-inq`,
//! `iscsi-readcapacity16`, qemu's iSCSI driver (`qemu-io iscsi://`), the same volume over NBD and
//! iSCSI, a crash with `kill -9` and restart, CHAP, a table of malformed PDUs on a raw socket, and
//! an RBD volume served like a Cairn one (its data checked with Ceph's own `rbd`; needs the test
//! cluster, `CAIRN_TEST_CEPH_CONF`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_tests::iscsi::{self, bhs, put32, Initiator};
use cairn_tests::{cairn, ceph, smis_step, test_config, Daemon};
use serde_json::Value;

const POOL: &str = "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"1GiB\"\n";

/// Creates the pool with volume `rw` (512-byte blocks) and read-only `ro` before the daemon
/// starts; returns the data directory.
fn prepared(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pool = data.join("pool0.img");
    let pool = pool.to_str().unwrap();
    for args in [
        vec![
            "--pool-file",
            pool,
            "pool",
            "create",
            "--name",
            "pool0",
            "--size",
            "1GiB",
        ],
        vec![
            "--pool-file",
            pool,
            "volume",
            "create",
            "rw",
            "--size",
            "128MiB",
            "--block-size",
            "512",
        ],
        vec![
            "--pool-file",
            pool,
            "volume",
            "create",
            "ro",
            "--size",
            "64MiB",
            "--read-only",
        ],
    ] {
        let (status, out, err) = cairn(&args).unwrap();
        assert!(status.success(), "cairn {args:?}: {out}{err}");
    }
    data
}

fn target_name(daemon: &Daemon) -> String {
    std::fs::read_to_string(daemon.data_dir.join("iscsi-target-name"))
        .unwrap()
        .trim()
        .to_string()
}

/// The LUN of volume `name`, from the daemon's LUN map and the volume ids.
fn lun_of(daemon: &Daemon, name: &str) -> u16 {
    let map: Value =
        serde_json::from_slice(&std::fs::read(daemon.data_dir.join("iscsi-luns.json")).unwrap())
            .unwrap();
    let id = volume_id(daemon, name);
    map["luns"][&id]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} ({id}) not in {map}")) as u16
}

/// The volume's id as the LUN map keys it, found through its SMI-S Name (the NAA type 6 text:
/// the id with its first digit replaced by 6).
fn volume_id(daemon: &Daemon, name: &str) -> String {
    let out = smis_step(daemon, "volume_name.py", &[name]);
    let naa = out["name"].as_str().unwrap().to_lowercase();
    let map: Value =
        serde_json::from_slice(&std::fs::read(daemon.data_dir.join("iscsi-luns.json")).unwrap())
            .unwrap();
    map["luns"]
        .as_object()
        .unwrap()
        .keys()
        .find(|id| id[1..] == naa[1..])
        .cloned()
        .unwrap_or_else(|| panic!("no LUN for {name} ({naa})"))
}

fn iscsi_url(daemon: &Daemon, lun: u16) -> String {
    format!(
        "iscsi://{}/{}/{lun}",
        daemon.listen.iscsi.expect("iSCSI"),
        target_name(daemon)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (apt: libiscsi-bin, qemu-block-extra)"));
    eprintln!(
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Conformance families run against the read-write LUN (the read-only one runs ReadOnly).
const FAMILIES: &[&str] = &[
    "TestUnitReady",
    "Inquiry",
    "ReadCapacity10",
    "ReadCapacity16",
    "Read10",
    "Read16",
    "Write10",
    "Write16",
    "WriteSame10",
    "WriteSame16",
    "Unmap",
    "Verify10",
    "Verify16",
    "ReportSupportedOpcodes",
    "ModeSense6",
    "Mandatory",
    "iSCSIcmdsn",
    "iSCSIdatasn",
    "iSCSIResiduals",
    "iSCSITMF",
];

/// Runs one family; returns (tests ran, tests failed, asserts failed) from CUnit's summary.
fn family(url: &str, name: &str) -> (u32, u32, u32) {
    family_on(&[url], name)
}

/// Runs one family on `urls` (a second URL is the second path of the multipath tests).
fn family_on(urls: &[&str], name: &str) -> (u32, u32, u32) {
    let test = format!("ALL.{name}");
    let out = run(Command::new("iscsi-test-cu")
        .args(["--dataloss", "-t", &test])
        .args(urls));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = |label: &str| -> Vec<u32> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("{name}: no {label} row in {text}"));
        line.split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let (tests, asserts) = (row("tests"), row("asserts"));
    (tests[1], tests[3], asserts[3])
}

#[test]
fn libiscsi_conformance_families_pass() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let rw = iscsi_url(&daemon, lun_of(&daemon, "rw"));
    let ro = iscsi_url(&daemon, lun_of(&daemon, "ro"));
    let mut failures = Vec::new();
    let runs = FAMILIES
        .iter()
        .map(|f| (*f, rw.as_str()))
        .chain([("ReadOnly", ro.as_str())]);
    for (name, url) in runs {
        let (ran, failed, asserts_failed) = family(url, name);
        if ran == 0 || failed > 0 || asserts_failed > 0 {
            failures.push(format!(
                "{name}: ran {ran}, failed {failed}, failed asserts {asserts_failed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The families of what clusters need: persistent reservations (two initiators on one LU),
/// COMPARE AND WRITE, two sessions on one LU and SPC-2 RESERVE(6)/RELEASE(6).
const CLUSTER_FAMILIES: &[&str] = &[
    "PrinReadKeys",
    "PrinServiceactionRange",
    "PrinReportCapabilities",
    "ProutRegister",
    "ProutReserve",
    "ProutClear",
    "ProutPreempt",
    "CompareAndWrite",
    "MultipathIO",
    "Reserve6",
];

#[test]
fn libiscsi_reservation_families_pass() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let rw = iscsi_url(&daemon, lun_of(&daemon, "rw"));
    let mut failures = Vec::new();
    for name in CLUSTER_FAMILIES {
        let (ran, failed, asserts_failed) = family_on(&[&rw, &rw], name);
        if ran == 0 || failed > 0 || asserts_failed > 0 {
            failures.push(format!(
                "{name}: ran {ran}, failed {failed}, failed asserts {asserts_failed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn initiator_tools_see_the_luns_identity_and_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let portal = format!("iscsi://{}", daemon.listen.iscsi.unwrap());
    let iqn = target_name(&daemon);
    assert_eq!(iqn, iqn.to_lowercase());
    assert!(iqn.starts_with("iqn.2026-01.org.cairn:"), "{iqn}");
    let ls = String::from_utf8_lossy(&run(Command::new("iscsi-ls").args(["-s", &portal])).stdout)
        .to_string();
    assert!(ls.contains(&format!("Target:{iqn} Portal:")), "{ls}");
    let (rw, ro) = (lun_of(&daemon, "rw"), lun_of(&daemon, "ro"));
    for lun in [rw, ro] {
        assert!(
            ls.contains(&format!("Lun:{lun} ")),
            "LUN {lun} missing: {ls}"
        );
    }
    let cap = String::from_utf8_lossy(
        &run(Command::new("iscsi-readcapacity16").arg(iscsi_url(&daemon, rw))).stdout,
    )
    .to_string();
    assert!(cap.contains("Total size:134217728"), "{cap}");
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:512"), "{cap}");
    assert!(cap.contains("LBPME:1 LBPRZ:1"), "{cap}");

    let name = smis_step(&daemon, "volume_name.py", &["rw"])["name"]
        .as_str()
        .unwrap()
        .to_string();
    // iscsi-inq prints the binary NAA designator as text (up to its first NUL byte).
    let inq =
        run(Command::new("iscsi-inq").args(["-e", "1", "-c", "131", &iscsi_url(&daemon, rw)]))
            .stdout;
    let text = String::from_utf8_lossy(&inq).to_string();
    assert!(text.contains("Designator Type:(3) NAA"), "{text}");
    let at = inq
        .windows(19)
        .position(|w| w == b"Designator Type:(3)")
        .unwrap();
    let start = at
        + inq[at..]
            .windows(12)
            .position(|w| w == b"Designator:[")
            .unwrap()
        + 12;
    let printed: String = inq[start..]
        .iter()
        .take_while(|&&b| b != b']' && b != b'\n')
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(
        printed.len() >= 2 && name.starts_with(&printed),
        "printed {printed}, SMI-S Name {name}"
    );
    // The whole designator, read over a raw session, is exactly the SMI-S Name.
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    ini.login_ok(&iqn, "").unwrap();
    let (page, status) = ini
        .read_command(rw, &iscsi::inquiry_vpd(0x83), 4096)
        .unwrap();
    assert_eq!(status, 0);
    assert_eq!(iscsi::naa_of_vpd83(&page), Some(name));
}

fn qemu_io(url: &str, commands: &[&str]) -> bool {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = run(cmd.arg(url));
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success()
        && !text.contains("Pattern verification failed")
        && !text.contains("failed:")
}

#[test]
fn nbd_and_iscsi_share_bytes_and_flushed_data_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let (rw, ro) = (lun_of(&daemon, "rw"), lun_of(&daemon, "ro"));
    let iqn = target_name(&daemon);
    let url = iscsi_url(&daemon, rw);
    let nbd = format!("nbd://{}/rw", daemon.listen.nbd.unwrap());
    assert!(qemu_io(&url, &["write -P 0xab 0 1M", "flush"]));
    assert!(qemu_io(
        &nbd,
        &["read -P 0xab 0 1M", "write -P 0xcd 1M 1M", "flush"]
    ));
    assert!(qemu_io(&url, &["read -P 0xab 0 1M", "read -P 0xcd 1M 1M"]));
    assert!(
        !qemu_io(&url, &["read -P 0xcd 0 4k"]),
        "a mismatch must be reported"
    );
    // Writes in flight (not flushed) when the daemon dies.
    let mut writer = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0xee 8M 32M", &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    daemon.kill().unwrap();
    let _ = writer.wait();
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    assert_eq!(target_name(&daemon), iqn, "the IQN survives a restart");
    assert_eq!(
        (lun_of(&daemon, "rw"), lun_of(&daemon, "ro")),
        (rw, ro),
        "LUN numbers survive a restart"
    );
    let url = iscsi_url(&daemon, rw);
    assert!(qemu_io(&url, &["read -P 0xab 0 1M", "read -P 0xcd 1M 1M"]));
    assert!(qemu_io(
        &format!("nbd://{}/rw", daemon.listen.nbd.unwrap()),
        &["read -P 0xab 0 1M"]
    ));
}

#[test]
fn a_snapshot_made_over_smis_reads_its_point_in_time_over_iscsi() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let url = iscsi_url(&daemon, lun_of(&daemon, "rw"));
    assert!(qemu_io(&url, &["write -P 0xaa 0 4M", "flush"]));
    let snap = smis_step(&daemon, "array_steps.py", &["snapshot", "rw", "rw-snap"]);
    assert_eq!(snap["rc"], 0, "{snap}");
    assert!(qemu_io(&url, &["write -P 0xbb 0 2M"]));
    // A new session sees the snapshot as one more LUN.
    let portal = format!("iscsi://{}", daemon.listen.iscsi.unwrap());
    let ls = String::from_utf8_lossy(&run(Command::new("iscsi-ls").args(["-s", &portal])).stdout)
        .to_string();
    let snap_lun = lun_of(&daemon, "rw-snap");
    assert!(ls.contains(&format!("Lun:{snap_lun} ")), "{ls}");
    let snap_url = iscsi_url(&daemon, snap_lun);
    assert!(qemu_io(&snap_url, &["read -P 0xaa 0 4M"]));
    assert!(qemu_io(&url, &["read -P 0xbb 0 2M", "read -P 0xaa 2M 2M"]));
    let name = smis_step(&daemon, "volume_name.py", &["rw-snap"])["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    ini.login_ok(&target_name(&daemon), "").unwrap();
    let (page, _) = ini
        .read_command(snap_lun, &iscsi::inquiry_vpd(0x83), 4096)
        .unwrap();
    assert_eq!(
        iscsi::naa_of_vpd83(&page),
        Some(name),
        "the snapshot's identity is its SMI-S Name"
    );
}

#[test]
fn lun_table_changes_are_unit_attentions_and_a_same_isid_login_reinstates() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let (addr, iqn, rw) = (
        daemon.listen.iscsi.unwrap(),
        target_name(&daemon),
        lun_of(&daemon, "rw"),
    );
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login_ok(&iqn, "").unwrap();
    let tur = [0u8; 6];
    assert_eq!(ini.read_command(rw, &tur, 0).unwrap().1, 0);
    let created = smis_step(
        &daemon,
        "array_steps.py",
        &["create-volume", "pool0", "added", "4194304"],
    );
    assert_eq!(created["rc"], 0, "{created}");
    let report = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let (luns, status) = ini.read_command(0, &report, 4096).unwrap();
    assert_eq!(
        (status, u32::from_be_bytes(luns[0..4].try_into().unwrap())),
        (0, 3 * 8),
        "{luns:?}"
    );
    let added = lun_of(&daemon, "added");
    assert!(luns[8..]
        .chunks(8)
        .any(|l| u16::from_be_bytes([l[0], l[1]]) == added));
    // The next command on another LUN reports the change once.
    let (sense, status) = ini.read_command(rw, &tur, 0).unwrap();
    assert_eq!(status, 2);
    assert_eq!(
        (sense[2 + 2] & 0x0f, sense[2 + 12], sense[2 + 13]),
        (6, 0x3f, 0x0e)
    );
    assert_eq!(ini.read_command(rw, &tur, 0).unwrap().1, 0);
    // A login with the same initiator name and ISID closes the old session.
    let mut again = Initiator::connect(addr).unwrap();
    again.login_ok(&iqn, "").unwrap();
    assert!(ini.closed().unwrap(), "the old session is closed");
    assert_eq!(again.read_command(added, &tur, 0).unwrap().1, 0);
}

/// Starts a WRITE(10) of one 4 KiB block at `lba` without its data (InitialR2T=Yes): the
/// command stays in flight until [`finish_write`]; returns its ITT and the R2T's TTT.
fn start_write(ini: &mut Initiator, lun: u16, lba: u32) -> (u32, u32) {
    let h = ini.command(lun, &iscsi::write10(lba, 8), false, 4096, 0);
    ini.send_raw(&h, &[], false, false).unwrap();
    let r2t = ini.recv().unwrap().expect("an R2T");
    assert_eq!(
        (r2t.opcode(), r2t.u32_at(40), r2t.u32_at(44)),
        (0x31, 0, 4096)
    );
    (r2t.u32_at(16), r2t.u32_at(20))
}

/// Sends the data an R2T asked for; the command's SCSI status.
fn finish_write(ini: &mut Initiator, lun: u16, (itt, ttt): (u32, u32), data: &[u8]) -> u8 {
    let mut h = bhs(0x05, 0x80, data.len());
    h[8..10].copy_from_slice(&lun.to_be_bytes());
    put32(&mut h, 16, itt);
    put32(&mut h, 20, ttt);
    put32(&mut h, 28, ini.exp_stat_sn);
    ini.send_raw(&h, data, false, false).unwrap();
    let r = ini.recv().unwrap().expect("the SCSI Response");
    assert_eq!((r.opcode(), r.u32_at(16)), (0x21, itt));
    r.bhs[3]
}

#[test]
fn writes_sent_back_to_back_each_get_their_own_status_and_land() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let rw = lun_of(&daemon, "rw");
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    ini.login_ok(&target_name(&daemon), "").unwrap();
    let (_, status) = ini
        .read_command(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096)
        .unwrap();
    assert_eq!(status, 0, "REPORT LUNS");
    // `rw` has 512-byte blocks (262,144 of them). Every command goes out, data and all, before
    // any answer is read, so the target finds them waiting together: 4 KiB writes, one past the
    // end, and two one-sector writes into one 4 KiB block.
    let mut writes: Vec<(u32, Vec<u8>)> = (0..20u32)
        .map(|i| (i * 24 + 8, vec![i as u8 + 1; 4096]))
        .collect();
    writes.push((262_144 - 4, vec![0xee; 4096]));
    writes.push((8001, vec![0xa1; 512]));
    writes.push((8003, vec![0xa3; 512]));
    let mut itts = Vec::new();
    for (lba, data) in &writes {
        let cdb = iscsi::write10(*lba, (data.len() / 512) as u16);
        let h = ini.command(rw, &cdb, false, data.len() as u32, data.len());
        itts.push(u32::from_be_bytes(h[16..20].try_into().unwrap()));
        ini.send_raw(&h, data, false, false).unwrap();
    }
    let mut statuses = std::collections::HashMap::new();
    for _ in 0..writes.len() {
        let r = ini.recv().unwrap().expect("a SCSI Response");
        assert_eq!(r.opcode(), 0x21, "only responses come back");
        // The sense (length-prefixed) of a CHECK CONDITION: its key and additional sense code.
        let sense = (r.bhs[3] == 2).then(|| (r.data[4] & 0x0f, r.data[14]));
        assert!(
            statuses.insert(r.u32_at(16), (r.bhs[3], sense)).is_none(),
            "answered twice"
        );
    }
    for (i, itt) in itts.iter().enumerate() {
        let want = if i == 20 {
            (2, Some((5, 0x21)))
        } else {
            (0, None)
        };
        assert_eq!(statuses[itt], want, "write {i} at LBA {}", writes[i].0);
    }
    for (i, (lba, data)) in writes.iter().enumerate().filter(|&(i, _)| i != 20) {
        let blocks = (data.len() / 512) as u16;
        let (got, status) = ini
            .read_command(rw, &iscsi::read10(*lba, blocks), data.len() as u32)
            .unwrap();
        assert_eq!((status, &got), (0, data), "write {i} reads back");
    }
    // The 4 KiB block the two sector writes share: both there, zeros around them.
    let (got, _) = ini.read_command(rw, &iscsi::read10(8000, 8), 4096).unwrap();
    let mut want = vec![0u8; 4096];
    want[512..1024].fill(0xa1);
    want[1536..2048].fill(0xa3);
    assert_eq!(got, want);
    daemon.stop_cleanly();
}

/// Runs qemu-io on `url` reading commands from a pipe, so its session stays open between them.
struct LiveQemu {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl LiveQemu {
    fn open(url: &str) -> LiveQemu {
        let mut child = Command::new("qemu-io")
            .args(["-f", "raw", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("qemu-io");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        LiveQemu { child, out }
    }

    /// Runs one command; returns what qemu-io printed up to the line containing `done`.
    fn run(&mut self, command: &str, done: &[&str]) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "qemu-io ended during {command:?}: {seen}");
            seen.push_str(&line);
            if done.iter().any(|d| line.contains(d)) {
                return seen;
            }
        }
    }

    /// Ends qemu-io; its exit status reports whether a command failed.
    fn quit(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        self.child.wait().unwrap()
    }
}

#[test]
fn deleting_a_volume_removes_its_lun_from_live_sessions_unless_commands_are_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let (addr, iqn, rw) = (
        daemon.listen.iscsi.unwrap(),
        target_name(&daemon),
        lun_of(&daemon, "rw"),
    );
    let delete = |name: &str| smis_step(&daemon, "array_steps.py", &["delete", name])["rc"].clone();
    for name in ["doomed", "busy"] {
        let created = smis_step(
            &daemon,
            "array_steps.py",
            &["create-volume", "pool0", name, "4194304"],
        );
        assert_eq!(created["rc"], 0, "{created}");
    }
    // The session reads the LUN table when it starts (after the login answer), so once its
    // first command is answered the new volumes have their numbers.
    let mut ini = Initiator::connect(addr).unwrap();
    ini.login_ok(&iqn, "").unwrap();
    let (_, status) = ini
        .read_command(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096)
        .unwrap();
    assert_eq!(status, 0, "REPORT LUNS");
    let (doomed, busy) = (lun_of(&daemon, "doomed"), lun_of(&daemon, "busy"));
    assert_eq!(tur(&mut ini, doomed), (0, 0, 0, 0));
    // A live qemu session that wrote to the volume does not keep it from being deleted.
    let mut qemu = LiveQemu::open(&iscsi_url(&daemon, doomed));
    let wrote = qemu.run("write -P 0x5a 0 64k", &["wrote ", "failed"]);
    assert!(wrote.contains("wrote 65536/65536"), "{wrote}");
    assert_eq!(
        delete("doomed"),
        0,
        "an idle LUN is deleted under its sessions"
    );
    // qemu's next read finds the LUN gone (after the unit attention, which libiscsi retries).
    let read = qemu.run("read -P 0x5a 0 64k", &["read ", "failed"]);
    assert!(read.contains("read failed"), "{read}");
    assert!(!qemu.quit().success(), "qemu-io reports the failed read");
    // The raw session sees the LUN gone, the change reported once on the other LUNs.
    assert_eq!(tur(&mut ini, doomed), (2, 5, 0x25, 0));
    assert_eq!(tur(&mut ini, rw), (2, 6, 0x3f, 0x0e));
    assert_eq!(tur(&mut ini, rw), (0, 0, 0, 0));
    let (luns, status) = ini
        .read_command(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096)
        .unwrap();
    assert_eq!(status, 0);
    assert!(!luns[8..]
        .chunks(8)
        .any(|l| u16::from_be_bytes([l[0], l[1]]) == doomed));
    // Every LUN reports the change once.
    assert_eq!(tur(&mut ini, busy), (2, 6, 0x3f, 0x0e));
    // A command in flight (its data not yet sent) makes the delete answer In Use.
    let pending = start_write(&mut ini, busy, 0);
    assert_eq!(delete("busy"), 6, "In Use while a command is in flight");
    let block = vec![0xc3u8; 4096];
    assert_eq!(finish_write(&mut ini, busy, pending, &block), 0);
    let (back, status) = ini.read_command(busy, &iscsi::read10(0, 8), 4096).unwrap();
    assert_eq!((status, back), (0, block), "the volume was kept whole");
    assert_eq!(delete("busy"), 0, "deleted once its commands are done");
    assert_eq!(tur(&mut ini, busy), (2, 5, 0x25, 0));
}

#[test]
fn masking_views_show_each_initiator_exactly_its_luns() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let host_a = "iqn.2026-01.org.cairn.test:host-a";
    // The configured view seeds the masking views on this first start.
    let views = format!(
        "{POOL}[[iscsi.views]]\nname = \"a\"\ninitiators = [\"{host_a}\"]\n\
         luns = [{{ volume = \"rw\", lun = 5 }}]\n"
    );
    let daemon = Daemon::start(&data, &test_config(&views)).unwrap();
    assert!(data.join("iscsi-views.json").exists());
    let portal = format!("iscsi://{}", daemon.listen.iscsi.unwrap());
    let ls = |initiator: &str| {
        let out = run(Command::new("iscsi-ls").args(["-i", initiator, "-s", &portal]));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let seen = ls(host_a);
    assert!(seen.contains("Lun:5 "), "{seen}");
    assert_eq!(
        seen.matches("Lun:").count(),
        1,
        "only the view's LUN: {seen}"
    );
    let other = ls("iqn.2026-01.org.cairn.test:host-b");
    assert!(
        !other.contains("Lun:"),
        "an initiator in no view sees none: {other}"
    );
    // A hidden LUN is refused even when addressed directly; LUN 0 still answers INQUIRY.
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    ini.login_ok(&target_name(&daemon), "").unwrap();
    let (sense, status) = ini.read_command(5, &[0u8; 6], 0).unwrap();
    assert_eq!((status, sense[2 + 2] & 0x0f, sense[2 + 12]), (2, 5, 0x25));
    let (inquiry, status) = ini.read_command(0, &[0x12, 0, 0, 0, 96, 0], 96).unwrap();
    assert_eq!(
        (status, inquiry[0]),
        (0, 0x7f),
        "peripheral qualifier 3 on LUN 0"
    );
}

#[test]
fn an_idle_initiator_is_pinged_and_a_silent_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&format!("{POOL}[iscsi]\nnop_interval_secs = 1\n"));
    let daemon = Daemon::start(&prepared(dir.path()), &config).unwrap();
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    ini.login_ok(&target_name(&daemon), "").unwrap();
    let ping = ini.recv().unwrap().expect("a NOP-In ping");
    assert_eq!((ping.opcode(), ping.u32_at(16)), (0x20, 0xffff_ffff));
    let ttt = ping.u32_at(20);
    assert_ne!(ttt, 0xffff_ffff, "a ping the initiator must answer");
    // The answer: NOP-Out, immediate, ITT reserved, the ping's TTT.
    let mut answer = bhs(0x40, 0x80, 0);
    put32(&mut answer, 16, 0xffff_ffff);
    put32(&mut answer, 20, ttt);
    put32(&mut answer, 24, ini.cmd_sn);
    ini.send_raw(&answer, &[], false, false).unwrap();
    let again = ini.recv().unwrap().expect("the next ping");
    assert_eq!(again.opcode(), 0x20);
    assert!(
        ini.closed().unwrap(),
        "an initiator that stops answering is closed"
    );
}

#[test]
fn chap_one_way_and_mutual_and_the_insecure_portal_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let secrets = data.join("iscsi-chap.json");
    std::fs::write(
        &secrets,
        r#"{"initiators":[{"name":"host1","secret":"host1secret0"}],"target":{"name":"array","secret":"arraysecret0"}}"#,
    )
    .unwrap();
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let portal = daemon.listen.iscsi.unwrap();
    let ls = |user: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new("iscsi-ls");
        cmd.arg("-s").arg(format!("iscsi://{user}@{portal}"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Lun:")
    };
    assert!(ls("host1%host1secret0", &[]), "right secret");
    assert!(!ls("host1%wrongsecret0", &[]), "wrong secret refused");
    let mutual = [
        ("LIBISCSI_CHAP_TARGET_USERNAME", "array"),
        ("LIBISCSI_CHAP_TARGET_PASSWORD", "arraysecret0"),
    ];
    assert!(ls("host1%host1secret0", &mutual), "mutual CHAP");
    let wrong_target = [
        ("LIBISCSI_CHAP_TARGET_USERNAME", "array"),
        ("LIBISCSI_CHAP_TARGET_PASSWORD", "notthetarget"),
    ];
    assert!(
        !ls("host1%host1secret0", &wrong_target),
        "a target with the wrong secret is refused by the initiator"
    );
    // iSCSI Target Ports shows the portal's CHAP (5), the capabilities' CHAP (4).
    let settings = smis_step(&daemon, "masking.py", &["settings"]);
    let auth = &settings["ports"][0]["connection"]["values"]["PrimaryAuthenticationMethod"];
    assert_eq!(auth, &serde_json::json!([5, "uint16"]), "{settings}");
    let methods = &settings["capabilities"]["AuthenticationMethodsSupported"];
    assert_eq!(methods, &serde_json::json!([[4], "uint16"]), "{settings}");
    drop(daemon);

    let other = tempfile::tempdir().unwrap();
    let config = test_config(POOL).replace("iscsi = \"127.0.0.1:0\"", "iscsi = \"0.0.0.0:0\"");
    assert!(
        Daemon::start(&prepared(other.path()), &config).is_err(),
        "a non-loopback portal without CHAP is refused"
    );
}

/// Each malformed PDU and the answer RFC 7143 (level 0) and this target give it.
#[test]
fn malformed_pdus_are_answered_as_specified() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let addr = daemon.listen.iscsi.unwrap();
    let iqn = target_name(&daemon);
    let session = |extra: &str| {
        let mut ini = Initiator::connect(addr).unwrap();
        ini.login_ok(&iqn, extra).unwrap();
        ini
    };

    // An unknown opcode: Reject, reason 0x05 (command not supported), and the session goes on.
    let mut ini = session("");
    ini.send_raw(&bhs(0x1c, 0x80, 0), &[], false, false)
        .unwrap();
    let r = ini.recv().unwrap().unwrap();
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x05));
    let itt = ini.nop_out(b"ping", false).unwrap();
    let r = ini.recv().unwrap().unwrap();
    assert_eq!(
        (r.opcode(), r.u32_at(16), r.data.as_slice()),
        (0x20, itt, &b"ping"[..])
    );

    // A data segment longer than the target declared: Reject (protocol error), then close.
    let mut ini = session("");
    ini.send_raw(&bhs(0x00, 0x80, (1 << 24) - 1), &[], false, false)
        .unwrap();
    let r = ini.recv().unwrap().unwrap();
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x04));
    assert!(ini.closed().unwrap());

    // A bad data digest: Reject, reason 0x02; a bad header digest: the connection closes.
    let mut ini = session("HeaderDigest=CRC32C\0DataDigest=CRC32C\0");
    assert!(ini.header_digest && ini.data_digest);
    ini.nop_out(b"digest", true).unwrap();
    let r = ini.recv().unwrap().unwrap();
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x02));
    let mut h = bhs(0x00, 0x80, 0);
    put32(&mut h, 16, 99);
    ini.send_raw(&h, &[], true, false).unwrap();
    assert!(ini.closed().unwrap());

    // A command with a CmdSN outside the window is ignored: the next ping is answered first.
    let mut ini = session("");
    let mut tur = ini.command(0, &[0; 6], false, 0, 0);
    put32(&mut tur, 24, ini.cmd_sn.wrapping_add(1000));
    ini.cmd_sn -= 1;
    ini.send_raw(&tur, &[], false, false).unwrap();
    let itt = ini.nop_out(&[], false).unwrap();
    let r = ini.recv().unwrap().unwrap();
    assert_eq!(
        (r.opcode(), r.u32_at(16)),
        (0x20, itt),
        "the out-of-window command got no answer"
    );

    // A text key bomb at login: refused with status 0x020b and closed.
    let mut ini = Initiator::connect(addr).unwrap();
    let bomb: String = (0..200).map(|i| format!("X-k{i}=v\0")).collect();
    let r = ini.login(&iqn, &bomb).unwrap();
    assert_eq!((r.opcode(), r.bhs[36], r.bhs[37]), (0x23, 2, 0x0b));
    assert!(ini.closed().unwrap());

    // Login out of order: full feature phase as the current stage, or a SCSI command first.
    let mut ini = Initiator::connect(addr).unwrap();
    let r = ini
        .login_text(0x8f, b"InitiatorName=iqn.2026-01.org.cairn.test:raw\0")
        .unwrap();
    assert_eq!((r.bhs[36], r.bhs[37]), (2, 0x0b));
    let mut ini = Initiator::connect(addr).unwrap();
    let cmd = ini.command(0, &[0; 6], false, 0, 0);
    ini.send_raw(&cmd, &[], false, false).unwrap();
    assert!(ini.closed().unwrap());

    // A wrong target name and a missing initiator name.
    let mut ini = Initiator::connect(addr).unwrap();
    let r = ini.login("iqn.2026-01.org.cairn:elsewhere", "").unwrap();
    assert_eq!((r.bhs[36], r.bhs[37]), (2, 0x03));

    // After all of that the target still serves data: write and read back over a raw session.
    let mut ini = session("");
    let rw = lun_of(&daemon, "rw");
    let block: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(
        ini.write_command(rw, &iscsi::write10(64, 8), &block)
            .unwrap(),
        0
    );
    let (back, status) = ini.read_command(rw, &iscsi::read10(64, 8), 4096).unwrap();
    assert_eq!((status, back), (0, block));
}

/// A raw session of initiator `name` (one-PDU login, no digests).
fn session_of(daemon: &Daemon, name: &str) -> Initiator {
    let mut ini = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    let text = format!(
        "InitiatorName={name}\0SessionType=Normal\0TargetName={}\0",
        target_name(daemon)
    );
    let r = ini.login_text(0x87, text.as_bytes()).unwrap();
    assert_eq!((r.opcode(), r.bhs[36]), (0x23, 0), "login of {name}");
    ini
}

/// PERSISTENT RESERVE OUT `sa` with type `kind`, key, service action key and APTPL; the status.
fn prout(ini: &mut Initiator, lun: u16, sa: u8, kind: u8, key: u64, sark: u64, aptpl: bool) -> u8 {
    let mut list = [0u8; 24];
    list[0..8].copy_from_slice(&key.to_be_bytes());
    list[8..16].copy_from_slice(&sark.to_be_bytes());
    list[20] = aptpl as u8;
    let cdb = [0x5f, sa, kind, 0, 0, 0, 0, 0, 24, 0];
    ini.write_command(lun, &cdb, &list).unwrap()
}

/// PERSISTENT RESERVE IN `sa`: the data (or sense) and the status.
fn prin(ini: &mut Initiator, lun: u16, sa: u8) -> (Vec<u8>, u8) {
    ini.read_command(lun, &[0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096)
        .unwrap()
}

fn read_keys(ini: &mut Initiator, lun: u16) -> Vec<u64> {
    let (data, status) = prin(ini, lun, 0);
    assert_eq!(status, 0);
    data[8..]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

/// (status, sense key, ASC, ASCQ) of a one-block read at `lba`.
fn read_status(ini: &mut Initiator, lun: u16, lba: u32) -> (u8, Vec<u8>) {
    let (data, status) = ini.read_command(lun, &iscsi::read10(lba, 1), 512).unwrap();
    (status, data)
}

const RESERVATION_CONFLICT: u8 = 0x18;

#[test]
fn two_initiators_share_one_lu_and_reservations_survive_a_restart_only_with_aptpl() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let lun = lun_of(&daemon, "rw");
    let (na, nb) = (
        "iqn.2026-01.org.cairn.test:host-a",
        "iqn.2026-01.org.cairn.test:host-b",
    );
    let (mut a, mut b) = (session_of(&daemon, na), session_of(&daemon, nb));
    // A write from one session is what the other reads next.
    assert_eq!(
        a.write_command(lun, &iscsi::write10(3, 1), &[0x5a; 512])
            .unwrap(),
        0
    );
    assert_eq!(read_status(&mut b, lun, 3), (0, vec![0x5a; 512]));
    // Write Exclusive by A: B reads, B's writes conflict, A writes.
    assert_eq!(prout(&mut a, lun, 0, 0, 0, 0xa, false), 0);
    assert_eq!(prout(&mut b, lun, 0, 0, 0, 0xb, false), 0);
    assert_eq!(prout(&mut a, lun, 1, 1, 0xa, 0, false), 0);
    assert_eq!(read_status(&mut b, lun, 3).0, 0);
    let w = iscsi::write10(3, 1);
    assert_eq!(
        b.write_command(lun, &w, &[1; 512]).unwrap(),
        RESERVATION_CONFLICT
    );
    assert_eq!(
        prout(&mut b, lun, 1, 1, 0xb, 0, false),
        RESERVATION_CONFLICT
    );
    assert_eq!(a.write_command(lun, &w, &[2; 512]).unwrap(), 0);
    assert_eq!(read_keys(&mut b, lun), vec![0xa, 0xb]);
    // Without APTPL a restart forgets registrations and the reservation.
    drop((a, b));
    daemon.stop().unwrap();
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let (mut a, mut b) = (session_of(&daemon, na), session_of(&daemon, nb));
    assert!(read_keys(&mut a, lun).is_empty());
    // FUA: this write must survive the kill -9 below.
    let mut w_fua = w;
    w_fua[1] |= 0x08;
    assert_eq!(b.write_command(lun, &w_fua, &[3; 512]).unwrap(), 0);
    // With APTPL 1, an Exclusive Access reservation survives even kill -9.
    assert_eq!(prout(&mut a, lun, 0, 0, 0, 0xa, true), 0);
    assert_eq!(prout(&mut a, lun, 1, 3, 0xa, 0, false), 0);
    assert_eq!(read_status(&mut b, lun, 3).0, RESERVATION_CONFLICT);
    drop((a, b));
    daemon.kill().unwrap();
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let (mut a, mut b) = (session_of(&daemon, na), session_of(&daemon, nb));
    assert_eq!(read_keys(&mut b, lun), vec![0xa]);
    let (res, status) = prin(&mut b, lun, 1);
    assert_eq!(
        (status, res[8..16].to_vec(), res[21]),
        (0, 0xau64.to_be_bytes().to_vec(), 3)
    );
    let (caps, _) = prin(&mut b, lun, 2);
    assert_eq!((caps[2] & 1, caps[3] & 1), (1, 1), "PTPL_C and PTPL_A");
    assert_eq!(read_status(&mut b, lun, 3).0, RESERVATION_CONFLICT);
    assert_eq!(read_status(&mut a, lun, 3), (0, vec![3; 512]));
    // B registers and preempts A (PREEMPT AND ABORT): A is told REGISTRATIONS PREEMPTED, then
    // conflicts.
    assert_eq!(prout(&mut b, lun, 6, 0, 0, 0xb, true), 0);
    assert_eq!(prout(&mut b, lun, 5, 3, 0xb, 0xa, false), 0);
    let (status, sense) = read_status(&mut a, lun, 3);
    assert_eq!(
        (status, sense[2 + 2] & 0x0f, sense[2 + 12], sense[2 + 13]),
        (2, 6, 0x2a, 0x05)
    );
    assert_eq!(read_status(&mut a, lun, 3).0, RESERVATION_CONFLICT);
    assert_eq!(read_status(&mut b, lun, 3).0, 0);
}

/// The status of a six-byte CDB without data: TEST UNIT READY (`0`), RESERVE(6) (`0x16`),
/// RELEASE(6) (`0x17`).
fn spc2(ini: &mut Initiator, lun: u16, opcode: u8) -> u8 {
    ini.read_command(lun, &[opcode, 0, 0, 0, 0, 0], 0)
        .unwrap()
        .1
}

#[test]
fn spc2_reservations_coexist_with_persistent_ones_as_spc4_says() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let lun = lun_of(&daemon, "rw");
    let (mut a, mut b) = (
        session_of(&daemon, "iqn.2026-01.org.cairn.test:host-a"),
        session_of(&daemon, "iqn.2026-01.org.cairn.test:host-b"),
    );
    let (reserve, release) = (0x16, 0x17);
    // A holds an SPC-2 reservation: B conflicts on everything but INQUIRY and RELEASE(6).
    assert_eq!(spc2(&mut a, lun, reserve), 0);
    assert_eq!(spc2(&mut b, lun, reserve), RESERVATION_CONFLICT);
    assert_eq!(
        spc2(&mut b, lun, 0),
        RESERVATION_CONFLICT,
        "TEST UNIT READY"
    );
    assert_eq!(read_status(&mut b, lun, 0).0, RESERVATION_CONFLICT);
    let (_, status) = b.read_command(lun, &[0x12, 0, 0, 0, 96, 0], 96).unwrap();
    assert_eq!(status, 0);
    assert_eq!(spc2(&mut b, lun, release), 0, "GOOD and no effect");
    assert_eq!(read_status(&mut a, lun, 0).0, 0);
    // PERSISTENT RESERVE IN and OUT conflict with it, from the holder too.
    assert_eq!(
        prout(&mut a, lun, 0, 0, 0, 0xa, false),
        RESERVATION_CONFLICT
    );
    assert_eq!(prin(&mut b, lun, 0).1, RESERVATION_CONFLICT);
    assert_eq!(spc2(&mut a, lun, release), 0);
    assert_eq!(spc2(&mut b, lun, 0), 0);
    // A registration makes RESERVE(6) and RELEASE(6) conflict...
    assert_eq!(prout(&mut a, lun, 0, 0, 0, 0xa, false), 0);
    assert_eq!(spc2(&mut b, lun, reserve), RESERVATION_CONFLICT);
    assert_eq!(spc2(&mut b, lun, release), RESERVATION_CONFLICT);
    // ...except from the holder of a persistent reservation: GOOD, nothing changes.
    assert_eq!(prout(&mut a, lun, 1, 1, 0xa, 0, false), 0);
    assert_eq!(spc2(&mut a, lun, reserve), 0);
    assert_eq!(spc2(&mut a, lun, release), 0);
    assert_eq!(read_status(&mut b, lun, 0).0, 0, "Write Exclusive still");
    assert_eq!(
        b.write_command(lun, &iscsi::write10(0, 1), &[1; 512])
            .unwrap(),
        RESERVATION_CONFLICT
    );
    let (held, status) = prin(&mut b, lun, 1);
    assert_eq!((status, held[4..8].to_vec()), (0, vec![0, 0, 0, 16]));
    // A's session ends with an SPC-2 reservation held: it is released.
    assert_eq!(prout(&mut a, lun, 3, 0, 0xa, 0, false), 0, "CLEAR");
    assert_eq!(spc2(&mut a, lun, reserve), 0);
    drop(a);
    let mut c = session_of(&daemon, "iqn.2026-01.org.cairn.test:host-c");
    // The target sees the close asynchronously; RESERVE(6) from C succeeding is the signal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while spc2(&mut c, lun, reserve) == RESERVATION_CONFLICT {
        assert!(std::time::Instant::now() < deadline, "never released");
    }
    assert_eq!(spc2(&mut b, lun, reserve), RESERVATION_CONFLICT);
}

/// A task management request (immediate) for `lun`; the response code.
fn tmf(ini: &mut Initiator, lun: u16, function: u8) -> u8 {
    let mut h = bhs(0x02 | 0x40, 0x80 | function, 0);
    h[8..10].copy_from_slice(&lun.to_be_bytes());
    let itt = ini.next_itt();
    put32(&mut h, 16, itt);
    put32(&mut h, 20, 0xffff_ffff);
    put32(&mut h, 24, ini.cmd_sn);
    put32(&mut h, 28, ini.exp_stat_sn);
    ini.send_raw(&h, &[], false, false).unwrap();
    let r = ini.recv().unwrap().expect("a task management response");
    assert_eq!(r.opcode(), 0x22);
    r.bhs[2]
}

/// (status, sense key, ASC, ASCQ) of TEST UNIT READY.
fn tur(ini: &mut Initiator, lun: u16) -> (u8, u8, u8, u8) {
    let (sense, status) = ini.read_command(lun, &[0; 6], 0).unwrap();
    if status == 0 {
        return (0, 0, 0, 0);
    }
    (status, sense[2 + 2] & 0x0f, sense[2 + 12], sense[2 + 13])
}

/// COMPARE AND WRITE of one 512-byte block at `lba`: the SCSI Response (status, sense).
fn compare_and_write(
    ini: &mut Initiator,
    lun: u16,
    lba: u64,
    old: &[u8],
    new: &[u8],
) -> (u8, Vec<u8>) {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = 1;
    let data = [old, new].concat();
    let h = ini.command(lun, &cdb, false, data.len() as u32, data.len());
    ini.send_raw(&h, &data, false, false).unwrap();
    let r = ini.recv().unwrap().expect("a SCSI Response");
    assert_eq!(r.opcode(), 0x21);
    (r.bhs[3], r.data)
}

fn counter_block(n: u64) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn compare_and_write_is_atomic_across_sessions_and_resets_reach_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let lun = lun_of(&daemon, "rw");
    let (na, nb) = (
        "iqn.2026-01.org.cairn.test:host-a",
        "iqn.2026-01.org.cairn.test:host-b",
    );
    let mut a = session_of(&daemon, na);
    assert_eq!(
        a.write_command(lun, &iscsi::write10(9, 1), &counter_block(0))
            .unwrap(),
        0
    );
    // Two hosts increment one counter with read + COMPARE AND WRITE: none of the increments is
    // lost, which two racing writes of the same old value would do.
    let rounds = 150u64;
    // (Other names than `a`'s: a login with a live session's name and ISID would replace it.)
    let threads: Vec<_> = [nb, "iqn.2026-01.org.cairn.test:host-c"]
        .into_iter()
        .map(|name| {
            let mut ini = session_of(&daemon, name);
            std::thread::spawn(move || {
                let mut done = 0;
                while done < rounds {
                    let (old, status) = ini.read_command(lun, &iscsi::read10(9, 1), 512).unwrap();
                    assert_eq!(status, 0);
                    let n = u64::from_be_bytes(old[..8].try_into().unwrap());
                    let (status, _) =
                        compare_and_write(&mut ini, lun, 9, &old, &counter_block(n + 1));
                    assert!(status == 0 || status == 2, "status {status}");
                    done += (status == 0) as u64;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (block, _) = a.read_command(lun, &iscsi::read10(9, 1), 512).unwrap();
    assert_eq!(block, counter_block(2 * rounds));
    // A mismatch is MISCOMPARE with the offset of the first differing byte; nothing is written.
    let mut wrong = counter_block(2 * rounds);
    wrong[100] ^= 1;
    let (status, sense) = compare_and_write(&mut a, lun, 9, &wrong, &[7; 512]);
    let s = &sense[2..];
    assert_eq!(
        (
            status,
            s[0] & 0x80,
            s[2] & 0x0f,
            s[12],
            u32::from_be_bytes(s[3..7].try_into().unwrap())
        ),
        (2, 0x80, 0x0e, 0x1d, 100)
    );
    assert_eq!(
        a.read_command(lun, &iscsi::read10(9, 1), 512).unwrap().0,
        counter_block(2 * rounds)
    );
    // TARGET WARM RESET: every session, the one asking too, hears BUS DEVICE RESET once.
    let mut b = session_of(&daemon, nb);
    assert_eq!(tmf(&mut a, lun, 6), 0);
    for ini in [&mut a, &mut b] {
        assert_eq!(tur(ini, lun), (2, 6, 0x29, 0x03));
        assert_eq!(tur(ini, lun), (0, 0, 0, 0));
    }
    // CLEAR TASK SET with no task of the other session: it is told nothing.
    assert_eq!(tmf(&mut a, lun, 4), 0);
    assert_eq!(tur(&mut b, lun), (0, 0, 0, 0));
    // TARGET COLD RESET: the response, then every session's connection closes.
    assert_eq!(tmf(&mut b, lun, 7), 0);
    assert!(b.closed().unwrap() && a.closed().unwrap());
    let mut again = session_of(&daemon, na);
    assert_eq!(
        again
            .read_command(lun, &iscsi::read10(9, 1), 512)
            .unwrap()
            .0,
        counter_block(2 * rounds)
    );
}

/// qemu-io on LUN `lun` logged in as `initiator`.
fn qemu_io_as(daemon: &Daemon, initiator: &str, lun: u16, commands: &[&str]) -> bool {
    qemu_io_with(
        daemon,
        &format!("lun={lun},initiator-name={initiator}"),
        commands,
    )
}

/// qemu-io through qemu's iSCSI driver with `options` (lun=…, initiator-name=…, header-digest=…).
fn qemu_io_with(daemon: &Daemon, options: &str, commands: &[&str]) -> bool {
    let opts = format!(
        "driver=iscsi,transport=tcp,portal={},target={},{options}",
        daemon.listen.iscsi.unwrap(),
        target_name(daemon)
    );
    let mut cmd = Command::new("qemu-io");
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = run(cmd.args(["--image-opts", &opts]));
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success()
        && !text.contains("Pattern verification failed")
        && !text.contains("failed:")
}

/// The LUN lines `iscsi-ls` shows to `initiator`.
fn luns_seen_by(daemon: &Daemon, initiator: &str) -> Vec<String> {
    let portal = format!("iscsi://{}", daemon.listen.iscsi.unwrap());
    let out = run(Command::new("iscsi-ls").args(["-i", initiator, "-s", &portal]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("Lun:"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn a_snapshot_masked_over_smis_reaches_exactly_its_initiator_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let caps = smis_step(&daemon, "masking.py", &["capabilities"]);
    assert_eq!(
        caps["caps"],
        serde_json::json!([
            "ACCESS_GROUPS",
            "ACCESS_GROUPS_GRANTED_TO_VOLUME",
            "ACCESS_GROUP_CREATE_ISCSI_IQN",
            "ACCESS_GROUP_DELETE",
            "ACCESS_GROUP_INITIATOR_ADD_ISCSI_IQN",
            "ACCESS_GROUP_INITIATOR_DELETE",
            "TARGET_PORTS",
            "VOLUMES_ACCESSIBLE_BY_ACCESS_GROUP",
            "VOLUME_MASK",
            "VOLUME_UNMASK"
        ]),
        "{caps}"
    );
    let url = iscsi_url(&daemon, lun_of(&daemon, "rw"));
    assert!(qemu_io(&url, &["write -P 0xaa 0 1M", "flush"]));
    let snap = smis_step(&daemon, "array_steps.py", &["snapshot", "rw", "rw-snap"]);
    assert_eq!(snap["rc"], 0, "{snap}");
    assert!(qemu_io(&url, &["write -P 0xbb 0 1M", "flush"]));
    // The raw initiator's name is the host's: its live session sees the mapping change.
    let host = "iqn.2026-01.org.cairn.test:raw";
    let mut live = Initiator::connect(daemon.listen.iscsi.unwrap()).unwrap();
    live.login_ok(&target_name(&daemon), "").unwrap();
    let mapped = smis_step(&daemon, "masking.py", &["map", host, "hosts", "rw-snap"]);
    for step in [
        "create_initiator_group",
        "create_target_group",
        "create_device_group",
        "create_masking_view",
    ] {
        assert_eq!(mapped[step], 0, "{step}: {mapped}");
    }
    assert_eq!(mapped["view_name_format"], 1, "{mapped}");
    let (sense, status) = live.read_command(0, &[0u8; 6], 0).unwrap();
    assert_eq!(
        (status, sense[2 + 2] & 0x0f, sense[2 + 12], sense[2 + 13]),
        (2, 6, 0x3f, 0x0e),
        "REPORTED LUNS DATA HAS CHANGED"
    );
    let shown = smis_step(&daemon, "masking.py", &["show", "hosts", "rw-snap"]);
    assert_eq!(shown["volumes"], serde_json::json!(["rw-snap"]), "{shown}");
    assert_eq!(shown["groups"], serde_json::json!(["hosts"]), "{shown}");
    assert_eq!(shown["initiators"], serde_json::json!([host]), "{shown}");
    assert_eq!(shown["luns"], serde_json::json!(["0"]), "{shown}");
    let port = serde_json::json!([{
        "node": target_name(&daemon),
        "address": daemon.listen.iscsi.unwrap().to_string()
    }]);
    assert_eq!(shown["ports"], port, "{shown}");
    // Masking and Mapping's privilege model: the group's initiator, Read and Write on the view.
    let privileges = |grants: serde_json::Value| {
        serde_json::json!({
            "grants": grants,
            "rights": [[true, [5, 6], ["CDB=*", "CDB=*"], [10, 10]]],
            "consistent": true
        })
    };
    assert_eq!(
        shown["privileges"],
        privileges(serde_json::json!([[host, "hosts"]])),
        "{shown}"
    );
    let other = "iqn.2026-01.org.cairn.test:other";
    assert_eq!(luns_seen_by(&daemon, host).len(), 1);
    assert!(luns_seen_by(&daemon, other).is_empty(), "not in the group");
    assert!(qemu_io_as(&daemon, host, 0, &["read -P 0xaa 0 1M"]));
    let refused = smis_step(&daemon, "masking.py", &["errors", "hosts", "rw-snap", "ro"]);
    let table = [
        ("unknown_initiator", 5),
        ("unknown_volume", 5),
        ("lun_in_use", 6),
        ("hide_not_exposed", 5),
        ("delete_group_in_view", 4),
        ("name_taken", 5),
        ("return_mapped_volume", 6),
    ];
    for (what, code) in table {
        assert_eq!(refused[what], code, "{what}: {refused}");
    }
    assert_eq!(refused["unchanged"], true, "{refused}");
    let inits = smis_step(&daemon, "masking.py", &["initiators", "hosts", other]);
    assert_eq!((&inits["add"], &inits["delete"]), (&0.into(), &0.into()));
    assert_eq!(inits["added"], serde_json::json!([other, host]), "{inits}");
    let both = serde_json::json!([[other, "hosts"], [host, "hosts"]]);
    assert_eq!(inits["granted"], privileges(both), "{inits}");
    let one = serde_json::json!([[host, "hosts"]]);
    assert_eq!(inits["privileges"], privileges(one), "{inits}");

    // The mapping is in the data directory: a restart keeps it.
    drop(live);
    daemon.stop().unwrap();
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    assert_eq!(luns_seen_by(&daemon, host).len(), 1);
    assert!(luns_seen_by(&daemon, other).is_empty());
    assert!(qemu_io_as(&daemon, host, 0, &["read -P 0xaa 0 1M"]));

    let unmapped = smis_step(&daemon, "masking.py", &["unmap", "hosts", "rw-snap"]);
    assert_eq!(
        unmapped,
        serde_json::json!({"unmask": 0, "left": 0, "delete": 0, "views": 0})
    );
    let deleted = smis_step(&daemon, "array_steps.py", &["delete", "rw-snap"]);
    assert_eq!(deleted["rc"], 0, "unmapped, it can be deleted: {deleted}");
}

#[test]
fn windows_masking_sets_expose_and_hide_paths_over_smis() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let daemon = Daemon::start(&data, &test_config(POOL)).unwrap();
    let snap = smis_step(&daemon, "array_steps.py", &["snapshot", "rw", "rw-snap"]);
    assert_eq!(snap["rc"], 0, "{snap}");
    let (host, host2) = (
        "iqn.1991-05.com.microsoft:host1",
        "iqn.1991-05.com.microsoft:host2",
    );
    let args = ["windows-expose", host, host2, "rw", "rw-snap", "ro"];
    let exposed = smis_step(&daemon, "masking.py", &args);
    for step in ["new_masking_set", "add_initiator", "add_virtual_disk"] {
        assert_eq!(exposed[step], 0, "{step}: {exposed}");
    }
    assert_eq!(exposed["luns"], serde_json::json!(["0", "5"]), "{exposed}");
    let refused = serde_json::json!({
        "lun_in_use": 4102, "unknown_lu": 4097, "bad_initiator": 4098,
        "unknown_target": 4099, "read_only_access": 4100
    });
    assert_eq!(exposed["refused"], refused, "{exposed}");
    assert_eq!(exposed["hide_not_exposed"], 4100, "{exposed}");
    assert_eq!(exposed["before"]["sets"], serde_json::json!({}));
    // The group masking service is a CIM_ControllerConfigurationService too (a subclass in the
    // DMTF schema); the one of Masking and Mapping comes first, for clients that take the first.
    assert_eq!(
        exposed["controller_services"],
        serde_json::json!({
            "classes": ["Cairn_ControllerConfigurationService", "Cairn_GroupMaskingMappingService"],
            "masking_and_mapping": ["Cairn_ControllerConfigurationService"],
        }),
        "{exposed}"
    );
    assert_eq!(
        exposed["after"]["sets"],
        serde_json::json!({"masking-1": [host, host2]}),
        "{exposed}"
    );
    assert_eq!(
        exposed["group_views"], 1,
        "the view is a group masking view too"
    );
    for initiator in [host, host2] {
        let seen = luns_seen_by(&daemon, initiator);
        assert_eq!(seen.len(), 2, "{initiator}: {seen:?}");
        assert!(seen.iter().any(|l| l.starts_with("Lun:5 ")), "{seen:?}");
    }
    assert!(luns_seen_by(&daemon, "iqn.1991-05.com.microsoft:other").is_empty());
    // One privilege for each initiator that sees the set's LUNs, and none for any other.
    let rights = serde_json::json!([[true, [5, 6], ["CDB=*", "CDB=*"], [10, 10]]]);
    assert_eq!(
        exposed["privileges"],
        serde_json::json!({"grants": [[host, "masking-1"], [host2, "masking-1"]],
                           "rights": rights, "consistent": true}),
        "{exposed}"
    );
    let hidden = smis_step(&daemon, "masking.py", &["windows-hide", host2, "rw-snap"]);
    assert_eq!(
        hidden,
        serde_json::json!({"hide_virtual_disk": 0, "remove_initiator": 0, "luns": ["0"],
                           "privileges_hidden": [[host, "masking-1"]],
                           "remove_masking_set": 0, "sets": 0, "groups": 0,
                           "privileges": {"grants": [], "rights": [], "consistent": true}})
    );
}

/// The keys of a login response's text, with their values.
fn answers(text: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(text)
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// iSCSI Target Ports' settings over pywbem, each against what a login negotiates: a raw
/// initiator offering the far end of every key gets the target's side of it (a minimum key
/// offered at its maximum, a maximum key at 0, an OR key No, an AND key Yes), and qemu's iSCSI
/// driver reads with either digest.
#[test]
fn target_port_settings_are_what_a_login_through_the_port_negotiates() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&prepared(dir.path()), &test_config(POOL)).unwrap();
    let portal = daemon.listen.iscsi.unwrap();
    let got = smis_step(&daemon, "masking.py", &["settings"]);
    assert_eq!(got["counts"], serde_json::json!([1, 1, 1]), "{got}");
    let port = &got["ports"][0];
    assert_eq!(got["ports"].as_array().unwrap().len(), 1, "{got}");
    let endpoint = format!("{},t,0x0001", target_name(&daemon));
    assert_eq!(port["endpoint"], endpoint.as_str());

    let offered = [
        ("MaxConnections", "65535"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxOutstandingR2T", "65535"),
        ("MaxBurstLength", "16777215"),
        ("FirstBurstLength", "16777215"),
        ("DataPDUInOrder", "No"),
        ("DataSequenceInOrder", "No"),
        ("DefaultTime2Wait", "0"),
        ("DefaultTime2Retain", "3600"),
        ("ErrorRecoveryLevel", "2"),
        ("IFMarker", "Yes"),
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "None,CRC32C"),
    ];
    let text: String = offered.iter().map(|(k, v)| format!("{k}={v}\0")).collect();
    let mut ini = Initiator::connect(portal).unwrap();
    let r = ini.login_ok(&target_name(&daemon), &text).unwrap();
    let a = answers(&r.data);
    let num = |k: &str| Value::from(a[k].parse::<u64>().unwrap());
    let yes = |k: &str| Value::Bool(a[k] == "Yes");
    let typed = |v: Value, ty: &str| serde_json::json!([v, ty]);
    let session = [
        ("MaxConnectionsPerSession", num("MaxConnections")),
        ("InitialR2TPreference", yes("InitialR2T")),
        ("ImmediateDataPreference", yes("ImmediateData")),
        ("MaxOutstandingR2T", num("MaxOutstandingR2T")),
        (
            "MaxUnsolicitedFirstDataBurstLength",
            num("FirstBurstLength"),
        ),
        ("MaxDataBurstLength", num("MaxBurstLength")),
        ("DataSequenceInOrderPreference", yes("DataSequenceInOrder")),
        ("DataPDUInOrderPreference", yes("DataPDUInOrder")),
        ("DefaultTimeToWaitPreference", num("DefaultTime2Wait")),
        ("DefaultTimeToRetainPreference", num("DefaultTime2Retain")),
        ("ErrorRecoveryLevelPreference", num("ErrorRecoveryLevel")),
    ];
    let values = &port["session"]["values"];
    for (prop, want) in session {
        let ty = if want.is_boolean() {
            "boolean"
        } else {
            "uint32"
        };
        assert_eq!(values[prop], typed(want, ty), "{prop}: {a:?} {got}");
    }
    // Both digests are accepted, the initiator's first choice taken: None (RFC 7143's
    // default) first, CRC32C second.
    assert_eq!(
        (a["HeaderDigest"].as_str(), a["DataDigest"].as_str()),
        ("CRC32C", "None")
    );
    let connection = [
        (
            "MaxReceiveDataSegmentLength",
            typed(num("MaxRecvDataSegmentLength"), "uint32"),
        ),
        (
            "RequestingMarkersOnReceive",
            typed(yes("IFMarker"), "boolean"),
        ),
        ("PrimaryHeaderDigestMethod", typed(2.into(), "uint16")),
        ("SecondaryHeaderDigestMethod", typed(3.into(), "uint16")),
        ("PrimaryDataDigestMethod", typed(2.into(), "uint16")),
        ("SecondaryDataDigestMethod", typed(3.into(), "uint16")),
        // No Authentication: this login skipped the security stage; no second method.
        ("PrimaryAuthenticationMethod", typed(3.into(), "uint16")),
        ("SecondaryAuthenticationMethod", typed(2.into(), "uint16")),
    ];
    let values = &port["connection"]["values"];
    for (prop, want) in connection {
        assert_eq!(values[prop], want, "{prop}: {a:?} {got}");
    }
    // Version-max and Version-active of the login response.
    let versions = [("Maximum", r.bhs[2]), ("Minimum", r.bhs[3])];
    for (which, v) in versions {
        let prop = format!("{which}SpecificationVersionSupported");
        assert_eq!(
            got["capabilities"][&prop],
            typed(v.into(), "uint8"),
            "{got}"
        );
    }
    let u16s = |v: &[u16]| typed(v.into(), "uint16");
    assert_eq!(
        got["capabilities"]["AuthenticationMethodsSupported"],
        u16s(&[2])
    );
    assert_eq!(got["capabilities"]["SupportedFeatures"], u16s(&[2]));
    // Each setting found the same by GetInstance, and back from it its one element.
    let tcp = format!("CAIRN:TCP:{portal}");
    for (setting, element) in [("session", endpoint.as_str()), ("connection", tcp.as_str())] {
        let s = &port[setting];
        assert_eq!(s["same_as_get"], true, "{setting}: {got}");
        assert_eq!(
            s["current_default"],
            serde_json::json!([1, 1]),
            "{setting}: {got}"
        );
        assert_eq!(s["back"], serde_json::json!([element]), "{setting}: {got}");
    }
    // A real initiator with either digest.
    let lun = lun_of(&daemon, "rw");
    for digest in ["crc32c", "none"] {
        let opts = format!("lun={lun},header-digest={digest}");
        assert!(qemu_io_with(&daemon, &opts, &["read 0 64k"]), "{digest}");
    }
}

/// `qemu-img map` of LUN `lun` as `initiator` (qemu asks GET LBA STATUS): (start, length, data).
fn lba_map_as(daemon: &Daemon, initiator: &str, lun: u16) -> Vec<(u64, u64, bool)> {
    let opts = format!(
        "driver=iscsi,transport=tcp,portal={},target={},lun={lun},initiator-name={initiator}",
        daemon.listen.iscsi.unwrap(),
        target_name(daemon)
    );
    let out = run(Command::new("qemu-img").args(["map", "--output=json", "--image-opts", &opts]));
    assert!(out.status.success(), "qemu-img map");
    let map: Value = serde_json::from_slice(&out.stdout).unwrap();
    map.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_u64().unwrap();
            (n("start"), n("length"), e["data"].as_bool().unwrap())
        })
        .collect()
}

#[test]
fn an_rbd_volume_made_and_masked_over_smis_is_served_over_iscsi_as_ceph_sees_it() {
    ceph::ensure_pool(ceph::SMIS_POOL);
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let pools = format!("{POOL}{}", ceph::pool_config("ceph", ceph::SMIS_POOL));
    let daemon = Daemon::start(&data, &test_config(&pools)).unwrap();
    let vol = ceph::unique("iscsi");
    const MIB: usize = 1 << 20;
    let made = smis_step(
        &daemon,
        "array_steps.py",
        &["create-volume", "ceph", &vol, &(64 * MIB).to_string()],
    );
    assert_eq!(made["rc"], 0, "{made}");
    // Masked over SMI-S: exactly the group's initiator sees it, at LUN 0.
    let (host, other) = (
        "iqn.2026-01.org.cairn.test:rbd-host",
        "iqn.2026-01.org.cairn.test:rbd-other",
    );
    let mapped = smis_step(&daemon, "masking.py", &["map", host, "rbd-hosts", &vol]);
    assert_eq!(mapped["create_masking_view"], 0, "{mapped}");
    assert_eq!(luns_seen_by(&daemon, host).len(), 1);
    assert!(luns_seen_by(&daemon, other).is_empty(), "not in the group");

    // WRITE (one with FUA), WRITE SAME of zeroes, UNMAP and SYNCHRONIZE CACHE.
    assert!(qemu_io_as(
        &daemon,
        host,
        0,
        &[
            "write -P 0x5a 0 2M",
            "write -f -P 0x33 4M 64k",
            "write -z 512k 64k",
            "discard 1M 1M",
            "flush",
        ]
    ));
    let mut want = vec![0u8; 64 * MIB];
    want[..2 * MIB].fill(0x5a);
    want[4 * MIB..4 * MIB + 65536].fill(0x33);
    want[512 << 10..576 << 10].fill(0);
    want[MIB..2 * MIB].fill(0);
    assert!(qemu_io_as(
        &daemon,
        host,
        0,
        &[
            "read -P 0x5a 0 512k",
            "read -P 0 512k 64k",
            "read -P 0x5a 576k 448k",
            "read -P 0 1M 1M",
            "read -P 0x33 4M 64k",
        ]
    ));

    // Ceph's side: the bytes, and what GET LBA STATUS reports against `rbd diff`.
    let image = ceph::image_of(ceph::SMIS_POOL, &vol);
    let exported = dir.path().join("exported.raw");
    ceph::rbd(
        ceph::SMIS_POOL,
        &["export", &image, exported.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&exported).unwrap() == want,
        "rbd export differs from what was written over iSCSI"
    );
    let diff: Value = serde_json::from_slice(&ceph::rbd(
        ceph::SMIS_POOL,
        &["diff", "--format", "json", &image],
    ))
    .unwrap();
    let map = lba_map_as(&daemon, host, 0);
    let mapped_at = |at: u64| {
        map.iter()
            .any(|&(start, len, data)| data && start <= at && at < start + len)
    };
    for e in diff.as_array().unwrap() {
        let (offset, len) = (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap());
        assert!(
            mapped_at(offset) && mapped_at(offset + len - 1),
            "Ceph has data at {offset}+{len}: {map:?}"
        );
    }
    assert!(
        !mapped_at(32 * MIB as u64) && !mapped_at(64 * MIB as u64 - 1),
        "never written, reported unmapped: {map:?}"
    );

    let unmapped = smis_step(&daemon, "masking.py", &["unmap", "rbd-hosts", &vol]);
    assert_eq!(unmapped["unmask"], 0, "{unmapped}");
    assert_eq!(
        smis_step(&daemon, "array_steps.py", &["delete", &vol])["rc"],
        0
    );
    daemon.stop_cleanly();
}
