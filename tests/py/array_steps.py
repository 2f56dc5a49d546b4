"""Management steps against a running cairn daemon over SMI-S with pywbem, as a client would
call them. Usage: array_steps.py URL USER PASSWORD STEP [ARGS...]; prints one JSON line with the
result.

Steps:
  create-volume POOL NAME SIZE_BYTES   CreateOrModifyElementFromStoragePool (ElementType 5)
  snapshot SOURCE NAME                 CreateElementReplica SyncType 7, WaitForCopyState 4
  delete NAME                          ReturnToStoragePool
  profiles                             the SNIA profiles WBEMServer finds, and the Array's system
"""
import json
import sys

import pywbem

from cairnwbem import conn, one, pool_path, volume_path


def main():
    url, user, password, step, *args = sys.argv[1:]
    c = conn(url, user, password)
    if step == "create-volume":
        pool, name, size = args
        rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                                 one(c, "CIM_StorageConfigurationService"),
                                 ElementName=name, ElementType=pywbem.Uint16(5),
                                 InPool=pool_path(c, pool), Size=pywbem.Uint64(int(size)))
        result = {"rc": int(rc), "size": int(out["Size"]),
                  "element": out["TheElement"]["DeviceID"] if out.get("TheElement") else None}
    elif step == "snapshot":
        source, name = args
        rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                                 ElementName=name, SyncType=pywbem.Uint16(7),
                                 SourceElement=volume_path(c, source),
                                 WaitForCopyState=pywbem.Uint16(4))
        target = out.get("TargetElement")
        result = {"rc": int(rc),
                  "target": c.GetInstance(target)["ElementName"] if target else None}
        syncs = c.References(volume_path(c, source), ResultClass="CIM_StorageSynchronized")
        result["sync"] = [{k: (int(s[k]) if s[k] is not None else None)
                           for k in ("SyncType", "CopyType", "CopyState", "SyncState")}
                          for s in syncs]
    elif step == "delete":
        (name,) = args
        rc, _ = c.InvokeMethod("ReturnToStoragePool", one(c, "CIM_StorageConfigurationService"),
                               TheElement=volume_path(c, name))
        result = {"rc": int(rc)}
    elif step == "profiles":
        server = pywbem.WBEMServer(c)
        arrays = server.get_selected_profiles("SNIA", "Array")
        systems = []
        for p in arrays:
            systems += [str(i.classname) for i in server.get_central_instances(
                p.path, "CIM_ComputerSystem", reference_direction="snia")]
        result = {"interop": server.interop_ns, "namespaces": sorted(server.namespaces),
                  "array_versions": sorted(p["RegisteredVersion"] for p in arrays),
                  "systems": systems}
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
