"""Thin Provisioning's space figures: every pool's TotalManagedSpace and RemainingManagedSpace,
and every AllocatedFromStoragePool's SpaceConsumed, read three ways (EnumerateInstances, the
pull operations, GetInstance of each association path) so every path of the model serves them.

Arguments: none. Reports {"pools": {InstanceID: {...}}, "allocated": {way: [...]}}.
"""

from provider_common import connect, emit

conn = connect()
pools = {}
for p in conn.EnumerateInstances("CIM_StoragePool"):
    pools[p["InstanceID"]] = {
        "total": p["TotalManagedSpace"],
        "remaining": p["RemainingManagedSpace"],
        "primordial": p["Primordial"],
    }


def row(a):
    dependent = a["Dependent"]
    return {
        "pool": a["Antecedent"]["InstanceID"],
        "dependent": dependent.get("DeviceID") or dependent.get("InstanceID"),
        "consumed": a["SpaceConsumed"],
    }


enumerated = conn.EnumerateInstances("CIM_AllocatedFromStoragePool")
pulled = list(conn.IterEnumerateInstances("CIM_AllocatedFromStoragePool", MaxObjectCount=2))
got = [conn.GetInstance(a.path) for a in enumerated]
emit(
    {
        "pools": pools,
        "allocated": {
            "enumerate": sorted((row(a) for a in enumerated), key=lambda r: r["dependent"]),
            "pull": sorted((row(a) for a in pulled), key=lambda r: r["dependent"]),
            "get": sorted((row(a) for a in got), key=lambda r: r["dependent"]),
        },
    }
)
