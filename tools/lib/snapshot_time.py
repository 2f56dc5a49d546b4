"""Times one same-pool snapshot through SMI-S, or removes the ones made (part of
tools/rbd-bench.sh, not a test).

Usage: snapshot_time.py URL USER PASSWORD SOURCE INDEX
       snapshot_time.py URL USER PASSWORD SOURCE --delete COUNT
The first resolves the replication service and the source volume, then calls
CreateElementReplica (SyncType 7, a snapshot named SOURCE-snap-INDEX), timed from request to
answer as a client would see it, and prints the seconds. The second returns the snapshots
SOURCE-snap-0 .. COUNT-1 to the pool."""
import os
import sys
import time

import pywbem

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "py"))
from cairnwbem import conn, fail, one, volume_path  # noqa: E402


def snapshot(c, source, index):
    service = one(c, "CIM_ReplicationService")
    src = volume_path(c, source)
    start = time.perf_counter()
    rc, _ = c.InvokeMethod("CreateElementReplica", service, ElementName=f"{source}-snap-{index}",
                           SyncType=pywbem.Uint16(7), SourceElement=src)
    took = time.perf_counter() - start
    if int(rc) != 0:
        fail(f"CreateElementReplica answered {int(rc)}")
    print(f"{took:.6f}")


def delete(c, source, count):
    config = one(c, "CIM_StorageConfigurationService")
    for i in range(count):
        rc, _ = c.InvokeMethod("ReturnToStoragePool", config,
                               TheElement=volume_path(c, f"{source}-snap-{i}"))
        if int(rc) != 0:
            fail(f"ReturnToStoragePool answered {int(rc)}")


def main():
    url, user, password, source, *rest = sys.argv[1:]
    c = conn(url, user, password)
    if rest[0] == "--delete":
        delete(c, source, int(rest[1]))
    else:
        snapshot(c, source, int(rest[0]))


main()
