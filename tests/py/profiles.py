"""The Copy Services, Thin Provisioning and Location parts of a running cairn daemon, read with
pywbem's WBEMServer the way discovery tools read them. Usage: profiles.py URL USER PASSWORD
LOCATION_NAME LOCATION_POSITION; prints one JSON line with the result, exits non-zero on a
failed check.

Checks: both profiles registered (SNIA), referenced from Array, their central instance the
storage configuration service (found by pywbem's central-instance methodology); a
StorageReplicationCapabilities per synchronization type tied to that service; after a volume and a
snapshot are made, a StorageSetting per volume (GetInstance, ElementSettingData both ways) with its
thin figures, the snapshot's StorageSynchronized CopyState 4 (SyncState NULL), the pools' space
limits and the thin-volume element type in their capabilities; the configured CIM_Location tied to
the system's physical package; after the snapshot is deleted its setting is gone.
"""
import json
import os
import sys
import traceback

import pywbem
from pywbem import WBEMServer

from cairnwbem import NS, conn, fail, one

INTEROP = "interop"


def same(a, b):
    """Two instance paths name the same object (host left aside)."""
    a, b = a.copy(), b.copy()
    a.host = b.host = None
    return a == b


def profile(server, name, version):
    found = server.get_selected_profiles("SNIA", name)
    if [p["RegisteredVersion"] for p in found] != [version]:
        fail(f"{name}: {[p['RegisteredVersion'] for p in found]}, want [{version}]")
    return found[0]


def check_profiles(c, server):
    array = profile(server, "Array", "1.6.1")
    components = c.Associators(array.path, AssocClass="CIM_ReferencedProfile",
                               Role="Antecedent", ResultRole="Dependent")
    names = {p["RegisteredName"] for p in components}
    scs = one(c, "CIM_StorageConfigurationService")
    for name, version in (("Copy Services", "1.5.0"), ("Thin Provisioning", "1.6.0")):
        p = profile(server, name, version)
        if name not in names:
            fail(f"{name} not referenced from Array: {sorted(names)}")
        central = server.get_central_instances(p.path, reference_direction="snia")
        if len(central) != 1 or not same(central[0], scs):
            fail(f"{name} central instances {central}")
    return scs


def check_replication_capabilities(c, scs):
    caps = c.Associators(scs, AssocClass="CIM_ElementCapabilities",
                         ResultClass="CIM_StorageReplicationCapabilities")
    types = sorted(i["SupportedSynchronizationType"] for i in caps)
    if types != [5, 6]:
        fail(f"StorageReplicationCapabilities types {types}")
    for i in caps:
        got = c.GetInstance(i.path)
        if list(got["SupportedSynchronousActions"]) != [2] or got["InitialReplicationState"] != 4:
            fail(f"capabilities {got.tomof()}")
    listed = c.EnumerateInstanceNames("CIM_StorageReplicationCapabilities", namespace=NS)
    return len(listed)


def make_volume_and_snapshot(c):
    pools = [p for p in c.EnumerateInstances("CIM_StoragePool", namespace=NS)
             if not p["Primordial"]]
    rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                             one(c, "CIM_StorageConfigurationService"),
                             ElementName="thin1", ElementType=pywbem.Uint16(5),
                             InPool=pools[0].path, Size=pywbem.Uint64(3 << 20))
    if rc != 0:
        fail(f"create thin1: {rc}")
    vol = out["TheElement"]
    rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                             ElementName="thin1-snap", SyncType=pywbem.Uint16(7),
                             SourceElement=vol)
    if rc != 0:
        fail(f"snapshot: {rc}")
    return vol, out["TargetElement"]


def check_setting(c, vol):
    """The volume's one current setting, both ways through ElementSettingData."""
    v = c.GetInstance(vol)
    settings = c.Associators(vol, AssocClass="CIM_ElementSettingData",
                             ResultClass="CIM_StorageSetting")
    if len(settings) != 1:
        fail(f"{len(settings)} settings of {v['ElementName']}")
    s = c.GetInstance(settings[0].path)
    size = v["NumberOfBlocks"] * v["BlockSize"]
    if (s["SpaceLimit"], s["ThinProvisionedInitialReserve"], v["ThinlyProvisioned"]) != (size, 0, True):
        fail(f"setting of {v['ElementName']}: {s.tomof()}")
    back = c.AssociatorNames(s.path, AssocClass="CIM_ElementSettingData",
                             ResultClass="CIM_StorageVolume")
    if len(back) != 1 or not same(back[0], vol):
        fail(f"setting {s['InstanceID']} names {back}")
    refs = c.References(vol, ResultClass="CIM_ElementSettingData")
    if len(refs) != 1 or refs[0]["IsCurrent"] != 1:
        fail(f"ElementSettingData of {v['ElementName']}: {refs}")
    return s.path


def check_pools(c):
    pools = [p for p in c.EnumerateInstances("CIM_StoragePool", namespace=NS)
             if not p["Primordial"]]
    for p in pools:
        if p["SpaceLimitDetermination"] != 2 or p["SpaceLimit"] != p["TotalManagedSpace"]:
            fail(f"pool {p['Name']}: {p['SpaceLimitDetermination']} {p['SpaceLimit']}")
        caps = c.Associators(p.path, AssocClass="CIM_ElementCapabilities",
                             ResultClass="CIM_StorageConfigurationCapabilities")
        if len(caps) != 1 or 5 not in caps[0]["SupportedStorageElementTypes"]:
            fail(f"pool {p['Name']} capabilities {caps}")
    return len(pools)


def check_location(c, name, position):
    locations = c.EnumerateInstances("CIM_Location", namespace=NS)
    got = [(i["Name"], i["ElementName"], i["PhysicalPosition"]) for i in locations]
    if got != [(name, name, position)]:
        fail(f"locations {got}")
    if c.GetInstance(locations[0].path)["PhysicalPosition"] != position:
        fail("GetInstance of the location")
    system = one(c, "CIM_ComputerSystem")
    packages = c.AssociatorNames(system, AssocClass="CIM_ComputerSystemPackage")
    if len(packages) != 1:
        fail(f"packages {packages}")
    placed = c.Associators(packages[0], AssocClass="CIM_PhysicalElementLocation",
                           ResultClass="CIM_Location")
    if [i["Name"] for i in placed] != [name]:
        fail(f"package location {placed}")
    back = c.AssociatorNames(locations[0].path, AssocClass="CIM_PhysicalElementLocation")
    if len(back) != 1 or not same(back[0], packages[0]):
        fail(f"location names {back}")


def main():
    url, user, password, loc_name, loc_position = sys.argv[1:]
    c = conn(url, user, password)
    server = WBEMServer(c)
    scs = check_profiles(c, server)
    replication_caps = check_replication_capabilities(c, scs)
    vol, snap = make_volume_and_snapshot(c)
    check_setting(c, vol)
    snap_setting = check_setting(c, snap)
    settings = c.EnumerateInstanceNames("CIM_StorageSetting", namespace=NS)
    syncs = [s for s in c.References(snap, ResultClass="CIM_StorageSynchronized")]
    if [(s["CopyState"], s["SyncState"]) for s in syncs] != [(4, None)]:
        fail(f"synchronization {[(s['CopyState'], s['SyncState']) for s in syncs]}")
    pools = check_pools(c)
    check_location(c, loc_name, loc_position)
    rc, _ = c.InvokeMethod("ReturnToStoragePool", scs, TheElement=snap)
    if rc != 0:
        fail(f"ReturnToStoragePool: {rc}")
    try:
        c.GetInstance(snap_setting)
        fail("the deleted snapshot's setting is still there")
    except pywbem.CIMError as e:
        if e.status_code != pywbem.CIM_ERR_NOT_FOUND:
            raise
    left = c.EnumerateInstanceNames("CIM_StorageSetting", namespace=NS)
    print(json.dumps({"ok": True, "settings": len(settings), "settings_after_delete": len(left),
                      "replication_capabilities": replication_caps, "pools": pools}))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - any failure ends the run with its traceback
        traceback.print_exc()
        fail("exception")
