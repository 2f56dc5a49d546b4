"""One replica request and what the model shows of it.

Arguments: METHOD SOURCE_DEVICE_ID SYNC_OR_COPY_TYPE NAME|- POOL|-
METHOD is CreateElementReplica (SyncType) or CreateReplica (CopyType). With 4096, polls the job to
its end, recording the target's OperationalStatus and the relationship while it runs.
"""

import time

import pywbem

from provider_common import NS, args, connect, emit, job_view, pool_path, service, volume_path

method, source_id, type_value, name, pool = args()
conn = connect()
src = volume_path(conn, source_id)
params = {"SourceElement": src}
if method == "CreateElementReplica":
    svc = service(conn, "CIM_ReplicationService")
    params["SyncType"] = pywbem.Uint16(int(type_value))
    params["WaitForCopyState"] = pywbem.Uint16(4)
else:
    svc = service(conn, "CIM_StorageConfigurationService")
    params["CopyType"] = pywbem.Uint16(int(type_value))
if name != "-":
    params["ElementName"] = name
if pool != "-":
    params["TargetPool"] = pool_path(conn, pool)
rc, out = conn.InvokeMethod(method, svc, **params)
result = {"rc": int(rc), "out": sorted(out.keys())}


def relationship(target):
    refs = conn.References(target, ResultClass="CIM_StorageSynchronized")
    return [
        {
            "source": r["SystemElement"]["DeviceID"],
            "target": r["SyncedElement"]["DeviceID"],
            "SyncType": r["SyncType"],
            "CopyType": r["CopyType"],
            "CopyState": r["CopyState"],
            "ProgressStatus": r["ProgressStatus"],
            "ReplicaType": r["ReplicaType"],
            "Mode": r["Mode"],
            "SyncState": r["SyncState"],
        }
        for r in refs
    ]


if "TargetElement" in out and out["TargetElement"] is not None:
    target = out["TargetElement"]
    inst = conn.GetInstance(target)
    result["target"] = target["DeviceID"]
    result["target_name"] = inst["ElementName"]
    result["target_opstatus"] = list(inst["OperationalStatus"])
    result["relationship_at_return"] = relationship(target)
if rc == 4096:
    job = out["Job"]
    result["job"] = job["InstanceID"]
    views = []
    deadline = time.time() + 120
    while time.time() < deadline:
        v = job_view(conn, job)
        views.append(v)
        if v["JobState"] not in (2, 3, 4):
            break
        time.sleep(0.05)
    result["job_views"] = views
    result["final"] = views[-1]
    rc_err, out_err = conn.InvokeMethod("GetError", job)
    result["get_error_rc"] = int(rc_err)
    err = out_err.get("Error")
    result["get_error"] = None if err is None else str(err)
    result["affected"] = [p["DeviceID"] for p in conn.AssociatorNames(job, AssocClass="CIM_AffectedJobElement")]
    result["owning"] = [p.classname for p in conn.AssociatorNames(job, AssocClass="CIM_OwningJobElement")]
    if result.get("target") and result["final"]["JobState"] == 7:
        target = out["TargetElement"]
        result["target_opstatus_after"] = list(conn.GetInstance(target)["OperationalStatus"])
        result["relationship_after"] = relationship(target)
        result["pools_of_target"] = [
            p["InstanceID"] for p in conn.AssociatorNames(target, AssocClass="CIM_AllocatedFromStoragePool")
        ]
if rc == 0 and "target" in result:
    target = out["TargetElement"]
    result["pools_of_target"] = [
        p["InstanceID"] for p in conn.AssociatorNames(target, AssocClass="CIM_AllocatedFromStoragePool")
    ]
    result["source_refs"] = len(conn.References(src, ResultClass="CIM_StorageSynchronized"))
emit(result)
