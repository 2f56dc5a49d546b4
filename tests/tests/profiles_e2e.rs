//! Copy Services, Thin Provisioning and the array's location end to end: pywbem's WBEMServer finds
//! both profiles registered and referenced from Array, their central instance, the replication
//! capabilities, a storage setting per volume (and none left for a deleted one), the pools' space
//! limits, the snapshot's CopyState and the CIM_Location the config names (tests/py/profiles.py).

use cairn_tests::{smis_step, test_config, Daemon};

#[test]
fn copy_services_thin_provisioning_and_location_are_discoverable() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(
        "[[pool]]\nname = \"pool0\"\npath = \"pool0.img\"\nsize = \"256MiB\"\n\
         [[pool]]\nname = \"pool1\"\npath = \"pool1.img\"\nsize = \"128MiB\"\n\
         [location]\nname = \"Lab 2\"\nphysical_position = \"rack 4, slot 12\"\n",
    );
    let daemon = Daemon::start(&dir.path().join("data"), &config).unwrap();
    let result = smis_step(&daemon, "profiles.py", &["Lab 2", "rack 4, slot 12"]);
    assert_eq!(result["settings"], 2, "{result}");
    assert_eq!(result["settings_after_delete"], 1, "{result}");
    assert_eq!(result["replication_capabilities"], 2, "{result}");
    assert_eq!(result["pools"], 2, "{result}");
    daemon.stop().unwrap();
}
