"""Starts a cross-pool CreateElementReplica and returns at once with the job and target, and what
the model shows while the copy runs: Detach and ReturnToStoragePool of the target answer In Use.

Arguments: SOURCE_DEVICE_ID NAME POOL
"""

import pywbem

from provider_common import NS, args, connect, emit, job_view, pool_path, service, volume_path

source_id, name, pool = args()
conn = connect()
rs = service(conn, "CIM_ReplicationService")
scs = service(conn, "CIM_StorageConfigurationService")
src = volume_path(conn, source_id)
rc, out = conn.InvokeMethod(
    "CreateElementReplica", rs, ElementName=name, SyncType=pywbem.Uint16(7), SourceElement=src,
    WaitForCopyState=pywbem.Uint16(4), TargetPool=pool_path(conn, pool),
)
target = out["TargetElement"]
sync = pywbem.CIMInstanceName(
    "CIM_StorageSynchronized", keybindings={"SystemElement": src, "SyncedElement": target}, namespace=NS
)
rc_detach, _ = conn.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=pywbem.Uint16(8),
                                 Synchronization=sync)
rc_return, _ = conn.InvokeMethod("ReturnToStoragePool", scs, TheElement=target)
emit(
    {
        "rc": int(rc),
        "job": out["Job"]["InstanceID"],
        "target": target["DeviceID"],
        "view": job_view(conn, out["Job"]),
        "rc_detach": int(rc_detach),
        "rc_return": int(rc_return),
    }
)
