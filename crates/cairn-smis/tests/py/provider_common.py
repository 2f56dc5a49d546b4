"""Shared helpers of the array model test scripts (tests/py/provider_*.py).

Each script talks to a running Cairn array with pywbem, prints one JSON object on its last line
with what it observed, and exits 0; the Rust test asserts on that JSON. Arguments:
URL USER PASSWORD [script-specific ...].
"""

import json
import sys

try:
    import pywbem
except ImportError as exc:
    sys.stderr.write("pywbem is not importable: %s\n" % exc)
    sys.exit(3)

NS = "root/cairn"


def connect(namespace=NS):
    url, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    return pywbem.WBEMConnection(
        url, (user, password), default_namespace=namespace, no_verification=True, timeout=60
    )


def args():
    return sys.argv[4:]


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str))
    sys.stdout.write("\n")


def volume_path(conn, device_id):
    for p in conn.EnumerateInstanceNames("CIM_StorageVolume"):
        if p["DeviceID"] == device_id:
            return p
    # A volume that does not exist: a well-formed path the array does not know.
    system = conn.EnumerateInstanceNames("CIM_ComputerSystem")[0]
    return pywbem.CIMInstanceName(
        "Cairn_StorageVolume",
        keybindings={
            "SystemCreationClassName": system["CreationClassName"],
            "SystemName": system["Name"],
            "CreationClassName": "Cairn_StorageVolume",
            "DeviceID": device_id,
        },
        namespace=NS,
    )


def pool_path(conn, name):
    for p in conn.EnumerateInstanceNames("CIM_StoragePool"):
        if p["InstanceID"] == "CAIRN:POOL:" + name:
            return p
    # A pool that does not exist: a well-formed path the array does not know.
    return pywbem.CIMInstanceName(
        "Cairn_StoragePool", keybindings={"InstanceID": "CAIRN:POOL:" + name}, namespace=NS
    )


def service(conn, classname):
    return conn.EnumerateInstanceNames(classname)[0]


def job_view(conn, job_path):
    job = conn.GetInstance(job_path)
    return {
        "JobState": job["JobState"],
        "PercentComplete": job["PercentComplete"],
        "OperationalStatus": list(job["OperationalStatus"] or []),
        "ErrorDescription": job["ErrorDescription"],
        "DeleteOnCompletion": job["DeleteOnCompletion"],
    }
