"""What every pywbem script of the daemon's end-to-end tests starts with: the connection to the
daemon's implementation namespace and the look-ups of the one service, a pool or a volume.

The tests run each script as `python tests/py/SCRIPT URL USER PASSWORD ...` by its absolute path
(tests/src/lib.rs `smis_step`, and the tests that start a script themselves), so Python puts this
directory first on `sys.path` and `import cairnwbem` works from any working directory, with no
PYTHONPATH. For the same reason no script here may take the name of a standard module: a script
named `array.py` was imported by `socket` in place of the standard `array`.
"""
import json
import os
import sys

import pywbem

NS = "root/cairn"


def fail(msg):
    """Reports a failed check as the one JSON line and exits non-zero at once (a listener's
    threads would keep the process alive after a plain exit)."""
    print(json.dumps({"ok": False, "error": msg}))
    sys.stdout.flush()
    os._exit(1)


def conn(url, user, password, timeout=60):
    """A connection to `root/cairn`; certificate verification off (the daemon's certificate is
    self-signed)."""
    return pywbem.WBEMConnection(url, (user, password), default_namespace=NS,
                                 no_verification=True, timeout=timeout)


def one(c, classname):
    """The path of the one instance of `classname` (a service, the system)."""
    names = c.EnumerateInstanceNames(classname)
    if len(names) != 1:
        fail(f"expected one {classname}, found {len(names)}")
    return names[0]


def pool_path(c, name=None):
    """The path of the concrete pool `name`, or of the first concrete pool."""
    for p in c.EnumerateInstances("CIM_StoragePool"):
        if not p["Primordial"] and name in (None, p["ElementName"]):
            return p.path
    fail(f"no pool {name}")


def volume(c, name):
    """The volume (or snapshot) whose ElementName is `name`."""
    for v in c.EnumerateInstances("CIM_StorageVolume"):
        if v["ElementName"] == name:
            return v
    fail(f"no volume {name}")


def volume_path(c, name):
    """The path of the volume (or snapshot) whose ElementName is `name`."""
    return volume(c, name).path
