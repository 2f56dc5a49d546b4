"""One of several concurrent clients: creates a snapshot of a volume and returns it to the pool,
ROUNDS times, and reports every return value.

Arguments: SOURCE_DEVICE_ID CLIENT ROUNDS
"""

import pywbem

from provider_common import args, connect, emit, service, volume_path

source_id, client, rounds = args()
conn = connect()
rs = service(conn, "CIM_ReplicationService")
scs = service(conn, "CIM_StorageConfigurationService")
src = volume_path(conn, source_id)
codes = []
for i in range(int(rounds)):
    rc, out = conn.InvokeMethod(
        "CreateElementReplica", rs, ElementName="c%s-r%d" % (client, i), SyncType=pywbem.Uint16(7),
        SourceElement=src, WaitForCopyState=pywbem.Uint16(4),
    )
    codes.append(int(rc))
    if rc == 0:
        rc2, _ = conn.InvokeMethod("ReturnToStoragePool", scs, TheElement=out["TargetElement"])
        codes.append(int(rc2))
emit({"codes": codes})
