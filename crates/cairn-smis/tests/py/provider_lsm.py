"""libstoragemgmt's SMI-S plugin sequence, re-enacted with pywbem (the plugin itself is in neither
apt nor PyPI): profile probe, vendor namespace from ElementConformsToProfile, services by
SystemName, capabilities via ElementCapabilities, pools via HostedStoragePool (primordial filtered),
volumes via AllocatedFromStoragePool, CreateElementReplica with the parameters the plugin sends,
job polling by EnumerateInstances of CIM_ConcreteJob, AffectedJobElement, ReturnToStoragePool.

Arguments: SOURCE_NAME SNAP_NAME COPY_NAME COPY_POOL
"""

import time

import pywbem

from provider_common import args, connect, emit

source_name, snap_name, copy_name, copy_pool = args()
conn = connect("interop")

# Profile probe: the plugin tries these interop namespaces in order, tolerating CIM errors 3, 5, 7.
profiles = None
for ns in ("interop", "root/interop", "root/PG_Interop"):
    try:
        profiles = conn.EnumerateInstances(
            "CIM_RegisteredProfile", namespace=ns,
            PropertyList=["RegisteredOrganization", "RegisteredName", "RegisteredVersion"],
        )
        break
    except pywbem.CIMError as e:
        if e.status_code not in (3, 5, 7):
            raise


def version_num(v):
    parts = [int(x) for x in v.split(".")] + [0, 0]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


array = [
    p for p in profiles
    if p["RegisteredOrganization"] == 11 and p["RegisteredName"] == "Array"
    and version_num(p["RegisteredVersion"]) >= version_num("1.4")
][0]
sys_paths = conn.AssociatorNames(
    array.path, AssocClass="CIM_ElementConformsToProfile", ResultRole="ManagedElement"
)
ns = sys_paths[0].namespace
system = conn.GetInstance(sys_paths[0])


def by_system(classname):
    return [s for s in conn.EnumerateInstances(classname, namespace=ns) if s["SystemName"] == system["Name"]]


scs = by_system("CIM_StorageConfigurationService")[0]
rs = by_system("CIM_ReplicationService")[0]
rs_caps = conn.Associators(rs.path, AssocClass="CIM_ElementCapabilities",
                           ResultClass="CIM_ReplicationServiceCapabilities")
scs_caps = conn.Associators(scs.path, AssocClass="CIM_ElementCapabilities",
                            ResultClass="CIM_StorageConfigurationCapabilities")
all_pools = conn.Associators(system.path, AssocClass="CIM_HostedStoragePool", ResultClass="CIM_StoragePool")
pools = [p for p in all_pools if not p["Primordial"]]
pool_caps = {
    p["ElementName"]: len(conn.Associators(p.path, AssocClass="CIM_ElementCapabilities",
                                           ResultClass="CIM_StorageConfigurationCapabilities"))
    for p in pools
}
volumes = {}
vol_pool = {}
for p in pools:
    for v in conn.Associators(p.path, AssocClass="CIM_AllocatedFromStoragePool", ResultClass="CIM_StorageVolume",
                              PropertyList=["ElementName", "NameFormat", "NameNamespace", "BlockSize",
                                            "NumberOfBlocks", "Name", "SystemName", "DeviceID", "Usage"]):
        volumes[v["ElementName"]] = v
        vol_pool[v["ElementName"]] = p
src = volumes[source_name]
src_pool = vol_pool[source_name]
target_pool = [p for p in pools if p["ElementName"] == copy_pool][0]

# CreateElementReplica exactly as the plugin sends it.
rc_snap, out_snap = conn.InvokeMethod(
    "CreateElementReplica", rs.path, ElementName=snap_name, SyncType=pywbem.Uint16(7),
    SourceElement=src.path, WaitForCopyState=pywbem.Uint16(4), TargetPool=src_pool.path,
)
rc_copy, out_copy = conn.InvokeMethod(
    "CreateElementReplica", rs.path, ElementName=copy_name, SyncType=pywbem.Uint16(7),
    SourceElement=src.path, WaitForCopyState=pywbem.Uint16(4), TargetPool=target_pool.path,
)
job_id = out_copy["Job"]["InstanceID"]
percents = []
state = None
job = None
deadline = time.time() + 120
while time.time() < deadline:
    jobs = [j for j in conn.EnumerateInstances("CIM_ConcreteJob", namespace=ns) if j["InstanceID"] == job_id]
    job = jobs[0]
    state = job["JobState"]
    percents.append(job["PercentComplete"])
    if state not in (2, 3, 4):
        break
    time.sleep(0.05)
affected = conn.AssociatorNames(out_copy["Job"], AssocClass="CIM_AffectedJobElement")
snap_vol = conn.GetInstance(out_snap["TargetElement"])
rc_return, _ = conn.InvokeMethod("ReturnToStoragePool", scs.path, TheElement=out_snap["TargetElement"])
emit(
    {
        "array_version": array["RegisteredVersion"],
        "namespace": ns,
        "system": system["Name"],
        "rs_caps": [
            {
                "types": sorted(int(x) for x in c["SupportedReplicationTypes"]),
                "async": sorted(int(x) for x in c["SupportedAsynchronousActions"]),
                "sync": sorted(int(x) for x in c["SupportedSynchronousActions"]),
            }
            for c in rs_caps
        ],
        "scs_caps": [
            {
                "types": sorted(int(x) for x in c["SupportedStorageElementTypes"]),
                "features": sorted(int(x) for x in c["SupportedStorageElementFeatures"]),
                "copy_types": sorted(int(x) for x in c["SupportedCopyTypes"]),
            }
            for c in scs_caps
        ],
        "pools": sorted(p["ElementName"] for p in pools),
        "primordial": len(all_pools) - len(pools),
        "pool_caps": pool_caps,
        "pool_usage": sorted(set(int(p["Usage"]) for p in pools)),
        "source": {
            "DeviceID": src["DeviceID"],
            "Name": src["Name"],
            "NameFormat": src["NameFormat"],
            "NameNamespace": src["NameNamespace"],
            "BlockSize": src["BlockSize"],
            "NumberOfBlocks": src["NumberOfBlocks"],
        },
        "rc_snap": int(rc_snap),
        "snap_device": out_snap["TargetElement"]["DeviceID"],
        "snap_name": snap_vol["ElementName"],
        "rc_copy": int(rc_copy),
        "copy_target": out_copy["TargetElement"]["DeviceID"],
        "job_state": state,
        "job_opstatus": list(job["OperationalStatus"]),
        "percents": percents,
        "affected": [p["DeviceID"] for p in affected],
        "rc_return": int(rc_return),
    }
)
