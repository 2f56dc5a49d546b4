"""Volume and pool management steps over SMI-S with pywbem, beside array_steps.py's. Usage:
volumes.py URL USER PASSWORD STEP [ARGS...]; prints one JSON line with the result.

Steps:
  create POOL NAME SIZE_BYTES CreateOrModifyElementFromStoragePool (ElementType 5); refusals too
  grow NAME SIZE_BYTES        CreateOrModifyElementFromStoragePool with TheElement and Size
  rename NAME NEW             ModifyInstance of the volume's ElementName
  restore SOURCE REPLICA      ModifyReplicaSynchronization Operation 15 on their relationship
  copy SOURCE NAME POOL       CreateElementReplica SyncType 7 with TargetPool, then the job polled
                              until it ends: rc, final JobState, every PercentComplete seen
  pools                       every non-primordial pool: name, OperationalStatus, HealthState, sizes
  volume NAME                 the volume's ElementName, NumberOfBlocks, BlockSize, pool
"""
import json
import sys
import time

import pywbem

from cairnwbem import conn, one, pool_path, volume


def sync_between(c, source, replica):
    for s in c.References(volume(c, source).path, ResultClass="CIM_StorageSynchronized"):
        if s["SyncedElement"]["DeviceID"] == volume(c, replica)["DeviceID"]:
            return s.path
    raise SystemExit(f"no relationship from {source} to {replica}")


def main():
    url, user, password, step, *args = sys.argv[1:]
    c = conn(url, user, password)
    if step == "create":
        pool, name, size = args
        rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                                 one(c, "CIM_StorageConfigurationService"),
                                 ElementName=name, ElementType=pywbem.Uint16(5),
                                 InPool=pool_path(c, pool), Size=pywbem.Uint64(int(size)))
        result = {"rc": int(rc), "size": int(out["Size"]) if out.get("Size") is not None else None}
    elif step == "grow":
        name, size = args
        rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                                 one(c, "CIM_StorageConfigurationService"),
                                 TheElement=volume(c, name).path, Size=pywbem.Uint64(int(size)))
        result = {"rc": int(rc), "size": int(out["Size"]) if out.get("Size") is not None else None}
    elif step == "rename":
        name, new = args
        v = volume(c, name)
        v["ElementName"] = new
        try:
            c.ModifyInstance(v, PropertyList=["ElementName"])
            result = {"error": None}
        except pywbem.CIMError as e:
            result = {"error": int(e.status_code)}
    elif step == "restore":
        source, replica = args
        rc, _ = c.InvokeMethod("ModifyReplicaSynchronization", one(c, "CIM_ReplicationService"),
                               Operation=pywbem.Uint16(15),
                               Synchronization=sync_between(c, source, replica))
        result = {"rc": int(rc)}
    elif step == "copy":
        source, name, pool = args
        path = next(p.path for p in c.EnumerateInstances("CIM_StoragePool")
                    if p["ElementName"] == pool and not p["Primordial"])
        rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                                 ElementName=name, SyncType=pywbem.Uint16(7),
                                 SourceElement=volume(c, source).path, TargetPool=path,
                                 WaitForCopyState=pywbem.Uint16(4))
        result = {"rc": int(rc), "state": None, "percent": []}
        deadline = time.monotonic() + 120
        while out.get("Job") is not None and time.monotonic() < deadline:
            job = c.GetInstance(out["Job"])
            result["percent"].append(int(job["PercentComplete"]))
            result["state"] = int(job["JobState"])
            result["error"] = job["ErrorDescription"]
            if result["state"] not in (2, 3, 4):
                break
            time.sleep(0.1)
    elif step == "pools":
        result = {p["ElementName"]: {"status": [int(s) for s in p["OperationalStatus"]],
                                     "health": int(p["HealthState"]),
                                     "total": int(p["TotalManagedSpace"]),
                                     "free": int(p["RemainingManagedSpace"])}
                  for p in c.EnumerateInstances("CIM_StoragePool") if not p["Primordial"]}
    elif step == "volume":
        (name,) = args
        v = volume(c, name)
        pools = c.Associators(v.path, AssocClass="CIM_AllocatedFromStoragePool",
                              ResultClass="CIM_StoragePool")
        result = {"name": v["ElementName"], "blocks": int(v["NumberOfBlocks"]),
                  "block_size": int(v["BlockSize"]), "pool": [p["ElementName"] for p in pools]}
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
