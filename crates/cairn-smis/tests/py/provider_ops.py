"""Single management operations, each printing its return value and output parameters.

Arguments: OP ARGS...
  return DEVICE_ID                          ReturnToStoragePool
  modify SOURCE_ID TARGET_ID OPERATION      ModifyReplicaSynchronization
  create POOL NAME|- SIZE ELEMENT_TYPE|-    CreateOrModifyElementFromStoragePool (create)
  grow DEVICE_ID SIZE                       CreateOrModifyElementFromStoragePool (modify, ElementType 2)
  sizes POOL ELEMENT_TYPE|-                 GetSupportedSizeRange
  stop JOB_INSTANCE_ID REQUESTED_STATE      ConcreteJob.RequestStateChange
  delete_job JOB_INSTANCE_ID                DeleteInstance of the job
  refs DEVICE_ID                            References(volume, ResultClass=CIM_StorageSynchronized)
  error JOB_INSTANCE_ID                     ConcreteJob.GetError
"""

import pywbem

from provider_common import NS, args, connect, emit, job_view, pool_path, service, volume_path

a = args()
op = a[0]
conn = connect()
scs = service(conn, "CIM_StorageConfigurationService")
rs = service(conn, "CIM_ReplicationService")


def job_path(iid):
    return pywbem.CIMInstanceName("Cairn_ConcreteJob", keybindings={"InstanceID": iid}, namespace=NS)


def outs(out):
    return {k: (v["DeviceID"] if isinstance(v, pywbem.CIMInstanceName) and "DeviceID" in v.keybindings
                else str(v) if isinstance(v, pywbem.CIMInstanceName) else v)
            for k, v in out.items()}


result = {}
if op == "return":
    rc, out = conn.InvokeMethod("ReturnToStoragePool", scs, TheElement=volume_path(conn, a[1]))
elif op == "modify":
    sync = pywbem.CIMInstanceName(
        "CIM_StorageSynchronized",
        keybindings={"SystemElement": volume_path(conn, a[1]), "SyncedElement": volume_path(conn, a[2])},
        namespace=NS,
    )
    rc, out = conn.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=pywbem.Uint16(int(a[3])),
                                Synchronization=sync)
elif op == "create":
    params = {"InPool": pool_path(conn, a[1]), "Size": pywbem.Uint64(int(a[3]))}
    if a[2] != "-":
        params["ElementName"] = a[2]
    if a[4] != "-":
        params["ElementType"] = pywbem.Uint16(int(a[4]))
    rc, out = conn.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, **params)
elif op == "grow":
    rc, out = conn.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementType=pywbem.Uint16(2),
                                TheElement=volume_path(conn, a[1]), Size=pywbem.Uint64(int(a[2])))
elif op == "sizes":
    params = {}
    if a[2] != "-":
        params["ElementType"] = pywbem.Uint16(int(a[2]))
    rc, out = conn.InvokeMethod("GetSupportedSizeRange", pool_path(conn, a[1]), **params)
elif op == "stop":
    rc, out = conn.InvokeMethod("RequestStateChange", job_path(a[1]), RequestedState=pywbem.Uint16(int(a[2])))
    result["job"] = job_view(conn, job_path(a[1]))
elif op == "delete_job":
    conn.DeleteInstance(job_path(a[1]))
    rc, out = 0, {}
    try:
        conn.GetInstance(job_path(a[1]))
        result["after"] = "present"
    except pywbem.CIMError as e:
        result["after"] = e.status_code
elif op == "error":
    rc, out = conn.InvokeMethod("GetError", job_path(a[1]))
    err = out.get("Error")
    result["job"] = job_view(conn, job_path(a[1]))
    if err is not None:
        inst = err if isinstance(err, pywbem.CIMInstance) else None
        result["error_class"] = inst.classname if inst is not None else type(err).__name__
        result["message"] = inst["Message"] if inst is not None else str(err)
        result["status_code"] = int(inst["CIMStatusCode"]) if inst is not None else None
    out = {}
elif op == "refs":
    refs = conn.References(volume_path(conn, a[1]), ResultClass="CIM_StorageSynchronized")
    rc, out = 0, {}
    result["refs"] = len(refs)
else:
    raise SystemExit("unknown op " + op)
result["rc"] = int(rc)
result["out"] = outs(out)
emit(result)
