//! A plain enumeration of thousands of volumes, answered by the real daemon batch by batch with
//! HTTP chunked transfer coding: pywbem (which sends no `TE: trailers`) gets every volume once
//! from EnumerateInstances and EnumerateInstanceNames, and curl asking for trailers gets the same
//! complete answer with the DSP0200 trailer fields declared.

use std::path::Path;
use std::process::Command;

use cairn_engine::{PoolOptions, VolumeOptions};
use cairn_tests::fixture::build_pool;
use cairn_tests::{smis_step, test_config, Daemon};

const VOLUMES: usize = 3_000;

fn daemon(dir: &Path) -> Daemon {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let opts = PoolOptions {
        commit_interval: None,
        ..PoolOptions::default()
    };
    build_pool(
        &data.join("pool0.img"),
        "pool0",
        16 << 30,
        opts,
        |storage| {
            for i in 0..VOLUMES {
                storage.create_volume(
                    "pool0",
                    &format!("v{i:05}"),
                    1 << 20,
                    VolumeOptions::default(),
                )?;
            }
            Ok(())
        },
    )
    .unwrap();
    let pool = "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"16GiB\"\n";
    Daemon::start(&data, &test_config(pool)).unwrap()
}

#[test]
fn thousands_of_volumes_enumerate_streamed_to_pywbem_and_curl() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    for mode in ["whole", "names"] {
        let seen = smis_step(&daemon, "enumerate.py", &[mode]);
        assert_eq!(seen["count"], VOLUMES, "{mode}: {seen}");
        assert_eq!(seen["distinct"], VOLUMES, "{mode}: {seen}");
    }

    let body = "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"3\" \
        PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateInstances\"><LOCALNAMESPACEPATH>\
        <NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cairn\"/></LOCALNAMESPACEPATH><IPARAMVALUE \
        NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageVolume\"/></IPARAMVALUE></IMETHODCALL>\
        </SIMPLEREQ></MESSAGE></CIM>";
    let headers = dir.path().join("headers");
    let url = format!("http://{}/cimom", daemon.listen.smis_http.unwrap());
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-u", "admin:secret", "-D"])
        .arg(&headers)
        .args(["-H", "Content-Type: application/xml; charset=\"utf-8\""])
        .args([
            "-H",
            "CIMOperation: MethodCall",
            "-H",
            "CIMMethod: EnumerateInstances",
        ])
        .args(["-H", "CIMObject: root%2Fcairn", "-H", "TE: trailers"])
        .args(["--data-binary", body, &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
    assert!(
        headers.contains("trailer: cimstatuscode, cimstatuscodedescription, cimerror"),
        "{headers}"
    );
    let answer = String::from_utf8(out.stdout).unwrap();
    assert_eq!(answer.matches("<VALUE.NAMEDINSTANCE>").count(), VOLUMES);
    assert!(
        answer.ends_with("</MESSAGE></CIM>\n"),
        "the answer is whole"
    );
    assert!(!answer.contains("<ERROR"));
    daemon.stop().unwrap();
}
