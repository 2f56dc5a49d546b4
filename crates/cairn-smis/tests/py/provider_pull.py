"""Pull operations over an array of many volumes, with pywbem's own pull calls.

Observes: an instance enumeration paged across many batches (each batch within MaxObjectCount,
no duplicates, all volumes), the same for paths and for the association classes with one
instance per volume, an Open with MaxObjectCount 0, CloseEnumeration, a context that expires
(OperationTimeout), an enumeration during which volumes are deleted and created, and the bound
on open contexts. Extra arguments: none.
"""

import time

import pywbem

from provider_common import connect, emit, pool_path, service

conn = connect()
out = {}


def drain(first, pull, max_count):
    """Every object of an enumeration: the Open's answer `first`, then pulls of `max_count`."""
    batches = [len(first[0])]
    objs = list(first[0])
    eos, ctx = first[1], first[2]
    while not eos:
        objs_more, eos, ctx = pull(ctx, MaxObjectCount=max_count)
        batches.append(len(objs_more))
        objs.extend(objs_more)
    return objs, batches


def device_ids(objs):
    return [o.path["DeviceID"] if hasattr(o, "path") else o["DeviceID"] for o in objs]


# Instances across many batches.
objs, batches = drain(
    conn.OpenEnumerateInstances("CIM_StorageVolume", MaxObjectCount=7),
    conn.PullInstancesWithPath,
    50,
)
ids = device_ids(objs)
out["instances"] = {
    "count": len(ids),
    "distinct": len(set(ids)),
    "first": batches[0],
    "largest_pull": max(batches[1:]),
    "pulls": len(batches) - 1,
    "with_names": sum(1 for o in objs if o["ElementName"]),
}

# Paths.
paths, batches = drain(
    conn.OpenEnumerateInstancePaths("CIM_StorageVolume", MaxObjectCount=100),
    conn.PullInstancePaths,
    100,
)
out["paths"] = {"count": len(paths), "distinct": len(set(str(p) for p in paths)),
                "same_volumes": sorted(device_ids(paths)) == sorted(ids)}

# The associations with an instance per volume, paged through with small batches.
for cls, n in [("CIM_StorageSynchronized", 40), ("CIM_AllocatedFromStoragePool", 3),
               ("CIM_SystemDevice", 333)]:
    found = [str(i.path) for i in conn.IterEnumerateInstances(cls, MaxObjectCount=n)]
    out[cls] = {"count": len(found), "distinct": len(set(found))}

# A property list applies to every batch.
listed = list(conn.IterEnumerateInstances("CIM_StorageVolume", MaxObjectCount=500,
                                          PropertyList=["ElementName"]))
out["property_list"] = sorted(set(tuple(sorted(i.keys())) for i in listed))

# MaxObjectCount 0: nothing yet, the rest by pull.
r = conn.OpenEnumerateInstancePaths("CIM_StorageVolume", MaxObjectCount=0)
rest, _ = drain(([], r.eos, r.context), conn.PullInstancePaths, 1000)
out["zero_first"] = {"first": len(r.paths), "eos": r.eos, "rest": len(rest)}


def status_of(call):
    try:
        call()
    except pywbem.CIMError as e:
        return e.status_code
    return 0


# Close, then pull: the context is gone.
r = conn.OpenEnumerateInstances("CIM_StorageVolume", MaxObjectCount=5)
conn.CloseEnumeration(r.context)
out["after_close"] = status_of(lambda: conn.PullInstancesWithPath(r.context, MaxObjectCount=5))

# A context expires OperationTimeout after its last use (the time passing is what is tested).
r = conn.OpenEnumerateInstances("CIM_StorageVolume", MaxObjectCount=5, OperationTimeout=1)
time.sleep(2.5)
out["after_timeout"] = status_of(lambda: conn.PullInstancesWithPath(r.context, MaxObjectCount=5))

# Volumes deleted and created while an enumeration runs: no error, no duplicate, the deleted
# volume not yet returned is skipped.
scs = service(conn, "CIM_StorageConfigurationService")
r = conn.OpenEnumerateInstances("CIM_StorageVolume", MaxObjectCount=10)
returned = device_ids(r.instances)
by_id = {p["DeviceID"]: p for p in paths}
ahead = [i for i in ids if i not in returned][-1]
behind = returned[0]
codes = []
for victim in (ahead, behind):
    rv, _ = conn.InvokeMethod("ReturnToStoragePool", scs, TheElement=by_id[victim])
    codes.append(int(rv))
rv, outp = conn.InvokeMethod(
    "CreateOrModifyElementFromStoragePool", scs, ElementName="late",
    ElementType=pywbem.Uint16(5), InPool=pool_path(conn, "pool0"), Size=pywbem.Uint64(1 << 20))
codes.append(int(rv))
late = outp["TheElement"]["DeviceID"]
objs, _ = drain((r.instances, r.eos, r.context), conn.PullInstancesWithPath, 100)
seen = device_ids(objs)
out["during_changes"] = {
    "codes": codes,
    "count": len(seen),
    "distinct": len(set(seen)),
    "deleted_ahead_seen": ahead in seen,
    "deleted_behind_seen": behind in seen,
    "late_seen": seen.count(late),
}

# Open contexts are bounded: past the bound the Open fails, and closing frees room.
opened = []
limit_status = 0
while len(opened) < 10000:
    try:
        opened.append(conn.OpenEnumerateInstancePaths("CIM_StorageVolume", MaxObjectCount=1).context)
    except pywbem.CIMError as e:
        limit_status = e.status_code
        break
out["contexts"] = {"opened": len(opened), "status": limit_status}
for ctx in opened:
    conn.CloseEnumeration(ctx)
out["contexts"]["after_close"] = len(conn.OpenEnumerateInstancePaths(
    "CIM_StorageVolume", MaxObjectCount=1).paths)

emit(out)
