"""Host access over SMI-S against a running cairn daemon, re-enacting the calls libstoragemgmt's
SMI-S plugin makes (access_group_create, access_group_initiator_add/delete, volume_mask/unmask,
volumes_accessible_by_access_group, access_groups_granted_to_volume, target_ports,
access_group_delete, capabilities) with pywbem. Usage: masking.py URL USER PASSWORD STEP [ARGS...];
prints one JSON line with the result.

Steps:
  capabilities                 what libstoragemgmt's capabilities() derives from the model
  map IQN GROUP VOLUME         access_group_create(GROUP, IQN) then volume_mask(GROUP, VOLUME)
  show GROUP VOLUME            volumes of GROUP, groups of VOLUME, target ports
  initiators GROUP IQN         access_group_initiator_add then _delete of a second initiator
  errors GROUP VOLUME OTHER    the refusals, each with its return code
  unmap GROUP VOLUME           volume_unmask(GROUP, VOLUME) then access_group_delete(GROUP)
  windows-expose IQN IQN2 VOL VOL2 VOL3   discovery levels 2-3, New-MaskingSet,
                               Add-InitiatorIdToMaskingSet, Add-VirtualDiskToMaskingSet (LUN 5)
                               and the ExposePaths/HidePaths refusals (Masking and Mapping)
  windows-hide IQN2 VOL2       Hide-VirtualDisk, Remove-InitiatorIdFromMaskingSet,
                               Remove-MaskingSet
  privileges                   the privilege model (Masking and Mapping): each
                               CIM_AuthorizedPrivilege with its subject and target
  settings                     iSCSI Target Ports' session and connection settings and iSCSI
                               capabilities, reached from the endpoints and the system

Steps that change who sees what also report the privileges of that moment.

The Windows sequences follow Microsoft's SMI-S provider requirements for Storage Management
(masking sets are CIM_SCSIProtocolControllers changed through the controller configuration
service).
"""
import json
import sys

import pywbem

from cairnwbem import NS, conn, volume_path


def system(c):
    (sys_path,) = c.EnumerateInstanceNames("CIM_ComputerSystem")
    return sys_path


def service(c, classname, sys_path):
    """libstoragemgmt's _cim_srv_of_sys_id: the service whose SystemName is the system's Name."""
    for s in c.EnumerateInstances(classname, PropertyList=["SystemName"]):
        if s["SystemName"] == sys_path["Name"]:
            return s.path
    raise SystemExit(f"no {classname}")


def profiles(c):
    return {(p["RegisteredName"], p["RegisteredVersion"])
            for p in c.EnumerateInstances("CIM_RegisteredProfile", namespace="interop")}


def capabilities(c):
    """smis_cap.get for masking and target ports."""
    names = {n for n, _ in profiles(c)}
    caps = []
    if "Group Masking and Mapping" in names:
        caps += ["ACCESS_GROUPS", "ACCESS_GROUPS_GRANTED_TO_VOLUME",
                 "VOLUMES_ACCESSIBLE_BY_ACCESS_GROUP", "VOLUME_MASK",
                 "ACCESS_GROUP_INITIATOR_DELETE"]
        if "iSCSI Target Ports" in names:
            caps += ["ACCESS_GROUP_INITIATOR_ADD_ISCSI_IQN", "ACCESS_GROUP_CREATE_ISCSI_IQN"]
        (cap,) = c.Associators(system(c), AssocClass="CIM_ElementCapabilities",
                               ResultClass="CIM_GroupMaskingMappingCapabilities",
                               PropertyList=["SupportedAsynchronousActions",
                                             "SupportedSynchronousActions",
                                             "SupportedDeviceGroupFeatures"])
        actions = list(cap["SupportedSynchronousActions"]) + list(
            cap["SupportedAsynchronousActions"] or [])
        if 5 in cap["SupportedDeviceGroupFeatures"] or 24 in actions:
            caps.append("VOLUME_UNMASK")
        if 20 in actions:
            caps.append("ACCESS_GROUP_DELETE")
    if "iSCSI Target Ports" in names:
        caps.append("TARGET_PORTS")
    return {"caps": sorted(caps), "profiles": sorted(f"{n} {v}" for n, v in profiles(c))}


def hwid_check_or_create(c, sys_path, iqn):
    """smis_ag.cim_init_path_check_or_create."""
    for h in c.EnumerateInstances("CIM_StorageHardwareID", PropertyList=["StorageID", "IDType"]):
        if h["StorageID"] == iqn:
            return h.path
    rc, out = c.InvokeMethod("CreateStorageHardwareID",
                             service(c, "CIM_StorageHardwareIDManagementService", sys_path),
                             StorageID=iqn, IDType=pywbem.Uint16(5))
    assert rc == 0, f"CreateStorageHardwareID {rc}"
    return out["HardwareID"]


def init_group(c, sys_path, name):
    gmms = service(c, "CIM_GroupMaskingMappingService", sys_path)
    for g in c.Associators(gmms, AssocClass="CIM_ServiceAffectsElement",
                           ResultClass="CIM_InitiatorMaskingGroup",
                           PropertyList=["ElementName", "InstanceID"]):
        if g["ElementName"] == name:
            return g.path
    raise SystemExit(f"no access group {name}")


def iscsi_endpoints(c, sys_path):
    """Smis._cim_iscsi_pg_of: the target-role iSCSI endpoints hosted by the system."""
    return [p for p in c.Associators(sys_path, AssocClass="CIM_HostedAccessPoint",
                                     ResultClass="CIM_iSCSIProtocolEndpoint",
                                     PropertyList=["Role"]) if p["Role"] == 3]


def map_volume(c, iqn, group, volume):
    sys_path = system(c)
    gmms = service(c, "CIM_GroupMaskingMappingService", sys_path)
    hwid = hwid_check_or_create(c, sys_path, iqn)
    rc, out = c.InvokeMethod("CreateGroup", gmms, GroupName=group, Members=[hwid],
                             Type=pywbem.Uint16(2))
    codes = {"create_initiator_group": int(rc)}
    img = out["MaskingGroup"]
    vol = volume_path(c, volume)
    spcs = c.AssociatorNames(img, AssocClass="CIM_AssociatedInitiatorMaskingGroup",
                             ResultClass="CIM_SCSIProtocolController")
    assert not spcs, spcs
    rc, out = c.InvokeMethod("CreateGroup", gmms, GroupName=group, Type=pywbem.Uint16(3),
                             Members=[p.path for p in iscsi_endpoints(c, sys_path)])
    codes["create_target_group"] = int(rc)
    tmg = out["MaskingGroup"]
    rc, out = c.InvokeMethod("CreateGroup", gmms, GroupName=group, Members=[vol],
                             Type=pywbem.Uint16(4))
    codes["create_device_group"] = int(rc)
    dmg = out["MaskingGroup"]
    rc, out = c.InvokeMethod("CreateMaskingView", gmms, ElementName=group,
                             InitiatorMaskingGroup=img, TargetMaskingGroup=tmg,
                             DeviceMaskingGroup=dmg)
    codes["create_masking_view"] = int(rc)
    spc = c.GetInstance(out["ProtocolController"])
    codes["view_name_format"] = int(spc["NameFormat"])
    return codes


def target_ports(c):
    """Smis.target_ports for iSCSI: endpoint → TCP → IP, and the node names of each endpoint."""
    ports = []
    for pe in iscsi_endpoints(c, system(c)):
        nodes = [s for s in c.Associators(pe.path, ResultClass="CIM_SCSIProtocolController",
                                          AssocClass="CIM_SAPAvailableForElement",
                                          PropertyList=["Name", "NameFormat"])
                 if s["NameFormat"] == 3]
        for tcp in c.Associators(pe.path, ResultClass="CIM_TCPProtocolEndpoint",
                                 AssocClass="CIM_BindsTo", PropertyList=["PortNumber"]):
            for ip in c.Associators(tcp.path, ResultClass="CIM_IPProtocolEndpoint",
                                    AssocClass="CIM_BindsTo",
                                    PropertyList=["IPv4Address", "IPv6Address"]):
                addr = ip["IPv4Address"] or f"[{ip['IPv6Address']}]"
                ports += [{"node": n["Name"], "address": f"{addr}:{tcp['PortNumber']}"}
                          for n in nodes]
    return ports


def show(c, group, volume):
    sys_path = system(c)
    img = init_group(c, sys_path, group)
    volumes = []
    for spc in c.AssociatorNames(img, AssocClass="CIM_AssociatedInitiatorMaskingGroup",
                                 ResultClass="CIM_SCSIProtocolController"):
        volumes += [v["ElementName"] for v in c.Associators(
            spc, AssocClass="CIM_ProtocolControllerForUnit", ResultClass="CIM_StorageVolume")]
    groups = []
    for spc in c.Associators(volume_path(c, volume), AssocClass="CIM_ProtocolControllerForUnit",
                             ResultClass="CIM_SCSIProtocolController"):
        groups += [g["ElementName"] for g in c.Associators(
            spc.path, AssocClass="CIM_AssociatedInitiatorMaskingGroup",
            ResultClass="CIM_InitiatorMaskingGroup", PropertyList=["ElementName", "InstanceID"])]
    members = [h["StorageID"] for h in c.Associators(
        img, AssocClass="CIM_MemberOfCollection", ResultClass="CIM_StorageHardwareID")]
    luns = [u["DeviceNumber"] for u in c.References(
        volume_path(c, volume), ResultClass="CIM_ProtocolControllerForUnit")]
    return {"volumes": volumes, "groups": groups, "initiators": members, "luns": luns,
            "ports": target_ports(c), "privileges": privileges(c)}


def view_pairs(c):
    """[initiator, view] for each initiator of each masking view, walked through the groups."""
    pairs = []
    for spc in masking_sets(c):
        for g in c.AssociatorNames(spc.path, AssocClass="CIM_AssociatedInitiatorMaskingGroup"):
            pairs += [[h["StorageID"], spc["ElementName"]] for h in c.Associators(
                g, AssocClass="CIM_MemberOfCollection", ResultClass="CIM_StorageHardwareID")]
    return sorted(pairs)


def privileges(c):
    """Each privilege as [initiator, view] through CIM_AuthorizedSubject / CIM_AuthorizedTarget,
    its distinct rights, and whether walking from every StorageHardwareID through its
    privileges to their controllers, and walking the views' groups, give the same pairs."""
    grants, rights = [], set()
    for p in c.EnumerateInstances("CIM_AuthorizedPrivilege"):
        (hw,) = c.Associators(p.path, AssocClass="CIM_AuthorizedSubject",
                              ResultClass="CIM_StorageHardwareID")
        (spc,) = c.Associators(p.path, AssocClass="CIM_AuthorizedTarget",
                               ResultClass="CIM_SCSIProtocolController")
        grants.append([hw["StorageID"], spc["ElementName"]])
        rights.add(json.dumps([p["PrivilegeGranted"], list(p["Activities"]),
                               list(p["ActivityQualifiers"]), list(p["QualifierFormats"])]))
        if c.GetInstance(p.path)["InstanceID"] != p["InstanceID"]:
            raise SystemExit(f"GetInstance of {p.path} differs")
    back = []
    for hw in c.EnumerateInstances("CIM_StorageHardwareID"):
        for p in c.AssociatorNames(hw.path, AssocClass="CIM_AuthorizedSubject",
                                   ResultClass="CIM_AuthorizedPrivilege"):
            back += [[hw["StorageID"], spc["ElementName"]] for spc in c.Associators(
                p, AssocClass="CIM_AuthorizedTarget", ResultClass="CIM_SCSIProtocolController")]
    grants.sort()
    return {"grants": grants, "rights": sorted(json.loads(r) for r in rights),
            "consistent": sorted(back) == grants == view_pairs(c)}


def initiators(c, group, iqn):
    """access_group_initiator_add, then access_group_initiator_delete, of IQN."""
    sys_path = system(c)
    gmms = service(c, "CIM_GroupMaskingMappingService", sys_path)
    img = init_group(c, sys_path, group)
    hwid = hwid_check_or_create(c, sys_path, iqn)
    rc, out = c.InvokeMethod("AddMembers", gmms, MaskingGroup=img, Members=[hwid])
    added = sorted(h["StorageID"] for h in c.Associators(
        out["MaskingGroup"], AssocClass="CIM_MemberOfCollection",
        ResultClass="CIM_StorageHardwareID"))
    granted = privileges(c)
    rc2, _ = c.InvokeMethod("RemoveMembers", gmms, MaskingGroup=img, Members=[hwid])
    return {"add": int(rc), "added": added, "delete": int(rc2), "granted": granted,
            "privileges": privileges(c)}


def errors(c, group, volume, other):
    """Each refusal with its return code; none may change the model."""
    sys_path = system(c)
    gmms = service(c, "CIM_GroupMaskingMappingService", sys_path)
    scs = service(c, "CIM_StorageConfigurationService", sys_path)
    img = init_group(c, sys_path, group)
    (spc,) = c.AssociatorNames(img, AssocClass="CIM_AssociatedInitiatorMaskingGroup",
                               ResultClass="CIM_SCSIProtocolController")
    (dmg,) = c.AssociatorNames(spc, AssocClass="CIM_AssociatedDeviceMaskingGroup",
                               ResultClass="CIM_DeviceMaskingGroup")
    unknown = pywbem.CIMInstanceName("Cairn_StorageHardwareID", namespace=NS,
                                     keybindings={"InstanceID": "CAIRN:HWID:iqn.x:unknown"})
    bogus_volume = volume_path(c, other).copy()
    bogus_volume["DeviceID"] = "00" * 16
    before = c.EnumerateInstanceNames("CIM_ProtocolControllerForUnit")
    out = {}
    out["unknown_initiator"] = c.InvokeMethod("AddMembers", gmms, MaskingGroup=img,
                                              Members=[unknown])[0]
    out["unknown_volume"] = c.InvokeMethod("AddMembers", gmms, MaskingGroup=dmg,
                                           Members=[bogus_volume])[0]
    out["lun_in_use"] = c.InvokeMethod("AddMembers", gmms, MaskingGroup=dmg,
                                       Members=[volume_path(c, other)], DeviceNumbers=["0"])[0]
    out["hide_not_exposed"] = c.InvokeMethod("RemoveMembers", gmms, MaskingGroup=dmg,
                                             Members=[volume_path(c, other)])[0]
    out["delete_group_in_view"] = c.InvokeMethod("DeleteGroup", gmms, MaskingGroup=dmg)[0]
    out["name_taken"] = c.InvokeMethod("CreateGroup", gmms, GroupName=group,
                                       Type=pywbem.Uint16(2))[0]
    out["return_mapped_volume"] = c.InvokeMethod("ReturnToStoragePool", scs,
                                                 TheElement=volume_path(c, volume))[0]
    out["unchanged"] = c.EnumerateInstanceNames("CIM_ProtocolControllerForUnit") == before
    return {k: (int(v) if not isinstance(v, bool) else v) for k, v in out.items()}


def unmap(c, group, volume):
    """Smis._volume_unmask_group then access_group_delete."""
    sys_path = system(c)
    gmms = service(c, "CIM_GroupMaskingMappingService", sys_path)
    img = init_group(c, sys_path, group)
    (spc,) = c.AssociatorNames(img, AssocClass="CIM_AssociatedInitiatorMaskingGroup",
                               ResultClass="CIM_SCSIProtocolController")
    (dmg,) = c.AssociatorNames(spc, AssocClass="CIM_AssociatedDeviceMaskingGroup",
                               ResultClass="CIM_DeviceMaskingGroup")
    rc = c.InvokeMethod("RemoveMembers", gmms, MaskingGroup=dmg,
                        Members=[volume_path(c, volume)])[0]
    left = c.AssociatorNames(spc, AssocClass="CIM_ProtocolControllerForUnit",
                             ResultClass="CIM_StorageVolume")
    rc2 = c.InvokeMethod("DeleteGroup", gmms, MaskingGroup=img, Force=True)[0]
    views = [s for s in c.EnumerateInstances("CIM_SCSIProtocolController")
             if s["NameFormat"] != 3]
    return {"unmask": int(rc), "left": len(left), "delete": int(rc2), "views": len(views)}


def naa(c, name):
    return c.GetInstance(volume_path(c, name), PropertyList=["Name"])["Name"]


def masking_sets(c):
    return [s for s in c.EnumerateInstances("CIM_SCSIProtocolController") if s["NameFormat"] != 3]


def windows_discovery(c):
    """Levels 2 and 3: masking sets with their initiator IDs, target ports with their nodes."""
    sets = {}
    for spc in masking_sets(c):
        ids = [h["StorageID"] for g in c.AssociatorNames(
            spc.path, AssocClass="CIM_AssociatedInitiatorMaskingGroup")
            for h in c.Associators(g, AssocClass="CIM_MemberOfCollection",
                                   ResultClass="CIM_StorageHardwareID")]
        sets[spc["ElementName"]] = sorted(ids)
    ports = [pe["Name"] for pe in c.EnumerateInstances("CIM_iSCSIProtocolEndpoint")]
    return {"sets": sets, "ports": ports,
            "hardware_ids": sorted(h["StorageID"] for h in
                                   c.EnumerateInstances("CIM_StorageHardwareID"))}


def controller_services(c):
    """Every CIM_ControllerConfigurationService in enumeration order (the group masking service
    is one: a subclass), and the classes of the elements conforming to Masking and Mapping."""
    (mm,) = [p.path for p in c.EnumerateInstances("CIM_RegisteredProfile", namespace="interop")
             if p["RegisteredName"] == "Masking and Mapping"]
    central = c.AssociatorNames(mm, AssocClass="CIM_ElementConformsToProfile",
                                ResultRole="ManagedElement")
    return {"classes": [s.classname for s in
                        c.EnumerateInstanceNames("CIM_ControllerConfigurationService")],
            "masking_and_mapping": sorted(p.classname for p in central)}


def windows_expose(c, iqn, iqn2, vol, vol2, vol3):
    sys_path = system(c)
    ccs = service(c, "CIM_ControllerConfigurationService", sys_path)
    port = c.EnumerateInstances("CIM_iSCSIProtocolEndpoint")[0]["Name"]
    rw = [pywbem.Uint16(2)]
    out = {"before": windows_discovery(c), "controller_services": controller_services(c)}
    rc, o = c.InvokeMethod("ExposePaths", ccs, InitiatorPortIDs=[iqn], TargetPortIDs=[port],
                           LUNames=[naa(c, vol)], DeviceAccesses=rw)
    out["new_masking_set"] = int(rc)
    (spc,) = o["ProtocolControllers"]
    out["add_initiator"] = int(c.InvokeMethod("ExposePaths", ccs, ProtocolControllers=[spc],
                                              InitiatorPortIDs=[iqn2])[0])
    out["add_virtual_disk"] = int(c.InvokeMethod(
        "ExposePaths", ccs, ProtocolControllers=[spc], LUNames=[naa(c, vol2)],
        DeviceAccesses=rw, DeviceNumbers=["5"])[0])
    out["luns"] = sorted(u["DeviceNumber"] for u in c.References(
        spc, ResultClass="CIM_ProtocolControllerForUnit"))
    bogus = "6" + "0" * 31
    refusals = {
        "lun_in_use": dict(ProtocolControllers=[spc], LUNames=[naa(c, vol3)],
                           DeviceNumbers=["5"]),
        "unknown_lu": dict(ProtocolControllers=[spc], LUNames=[bogus]),
        "bad_initiator": dict(ProtocolControllers=[spc], InitiatorPortIDs=["not-an-iqn"]),
        "unknown_target": dict(ProtocolControllers=[spc], TargetPortIDs=["iqn.x:none,t,0x9"]),
        "read_only_access": dict(ProtocolControllers=[spc], LUNames=[naa(c, vol3)],
                                 DeviceAccesses=[pywbem.Uint16(3)]),
    }
    out["refused"] = {k: int(c.InvokeMethod("ExposePaths", ccs, **v)[0])
                      for k, v in refusals.items()}
    out["hide_not_exposed"] = int(c.InvokeMethod("HidePaths", ccs, ProtocolControllers=[spc],
                                                 LUNames=[naa(c, vol3)])[0])
    out["after"] = windows_discovery(c)
    out["privileges"] = privileges(c)
    # The same view through Group Masking and Mapping.
    out["group_views"] = len(c.AssociatorNames(spc, AssocClass="CIM_AssociatedDeviceMaskingGroup"))
    return out


def windows_hide(c, iqn2, vol2):
    sys_path = system(c)
    ccs = service(c, "CIM_ControllerConfigurationService", sys_path)
    (spc,) = [s.path for s in masking_sets(c)]
    out = {"hide_virtual_disk": int(c.InvokeMethod("HidePaths", ccs, ProtocolControllers=[spc],
                                                   LUNames=[naa(c, vol2)])[0]),
           "remove_initiator": int(c.InvokeMethod("HidePaths", ccs, ProtocolControllers=[spc],
                                                  InitiatorPortIDs=[iqn2])[0])}
    out["luns"] = sorted(u["DeviceNumber"] for u in c.References(
        spc, ResultClass="CIM_ProtocolControllerForUnit"))
    out["privileges_hidden"] = privileges(c)["grants"]
    out["remove_masking_set"] = int(c.InvokeMethod("DeleteProtocolController", ccs,
                                                   ProtocolController=spc)[0])
    out["sets"] = len(masking_sets(c))
    out["groups"] = len(c.EnumerateInstanceNames("CIM_DeviceMaskingGroup"))
    out["privileges"] = privileges(c)
    return out


SESSION_SETTINGS = [
    "MaxConnectionsPerSession", "InitialR2TPreference", "ImmediateDataPreference",
    "MaxOutstandingR2T", "MaxUnsolicitedFirstDataBurstLength", "MaxDataBurstLength",
    "DataSequenceInOrderPreference", "DataPDUInOrderPreference", "DefaultTimeToWaitPreference",
    "DefaultTimeToRetainPreference", "ErrorRecoveryLevelPreference"]
CONNECTION_SETTINGS = [
    "MaxReceiveDataSegmentLength", "PrimaryHeaderDigestMethod", "SecondaryHeaderDigestMethod",
    "PrimaryDataDigestMethod", "SecondaryDataDigestMethod", "RequestingMarkersOnReceive",
    "PrimaryAuthenticationMethod", "SecondaryAuthenticationMethod"]
ISCSI_CAPABILITIES = [
    "MinimumSpecificationVersionSupported", "MaximumSpecificationVersionSupported",
    "AuthenticationMethodsSupported", "SupportedFeatures"]


def typed(inst, names):
    """{property: [value, CIM type]} of `inst`."""
    return {n: [inst[n], inst.properties[n].type] for n in names}


def one_setting(c, element, result_class, names):
    """The one setting of `element` (ElementSettingData), checked against its GetInstance, its
    References and the way back to `element`."""
    (s,) = c.Associators(element, AssocClass="CIM_ElementSettingData", ResultClass=result_class)
    (ref,) = c.References(element, ResultClass="CIM_ElementSettingData")
    back = c.AssociatorNames(s.path, AssocClass="CIM_ElementSettingData")
    return {"values": typed(s, names),
            "same_as_get": typed(c.GetInstance(s.path), names) == typed(s, names),
            "current_default": [ref["IsCurrent"], ref["IsDefault"]],
            "back": [p.keybindings.get("Name") for p in back]}


def settings(c):
    """Each endpoint's session settings (ElementSettingData from the iSCSI endpoint), its
    portal's connection settings (BindsTo to the TCP endpoint, then ElementSettingData) and the
    system's iSCSI capabilities (ElementCapabilities), as a client walks them."""
    sys_path = system(c)
    out = {"ports": []}
    for pe in iscsi_endpoints(c, sys_path):
        (tcp,) = c.AssociatorNames(pe.path, AssocClass="CIM_BindsTo",
                                   ResultClass="CIM_TCPProtocolEndpoint")
        out["ports"].append({
            "endpoint": pe.path["Name"],
            "session": one_setting(c, pe.path, "CIM_iSCSISessionSettings", SESSION_SETTINGS),
            "connection": one_setting(c, tcp, "CIM_iSCSIConnectionSettings",
                                      CONNECTION_SETTINGS)})
    (cap,) = c.Associators(sys_path, AssocClass="CIM_ElementCapabilities",
                           ResultClass="CIM_iSCSICapabilities")
    out["capabilities"] = typed(cap, ISCSI_CAPABILITIES)
    out["counts"] = [len(c.EnumerateInstanceNames(k)) for k in
                     ("CIM_iSCSISessionSettings", "CIM_iSCSIConnectionSettings",
                      "CIM_iSCSICapabilities")]
    return out


def main():
    url, user, password, step, *args = sys.argv[1:]
    c = conn(url, user, password)
    steps = {"capabilities": capabilities, "map": map_volume, "show": show,
             "initiators": initiators, "errors": errors, "unmap": unmap,
             "windows-expose": windows_expose, "windows-hide": windows_hide,
             "privileges": privileges, "settings": settings}
    print(json.dumps(steps[step](c, *args)))


if __name__ == "__main__":
    main()
