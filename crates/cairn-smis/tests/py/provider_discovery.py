"""pywbem WBEMServer discovery of the array: profiles, the Array profile's central instance (the
Cairn_StorageSystem), and the component profiles it references (SNIA direction)."""

import pywbem

from provider_common import connect, emit

conn = connect("interop")
server = pywbem.WBEMServer(conn)
profiles = sorted(
    [str(p["RegisteredOrganization"]), p["RegisteredName"], p["RegisteredVersion"]]
    for p in server.profiles
)
arrays = server.get_selected_profiles(registered_org="SNIA", registered_name="Array")
central = []
for a in arrays:
    for path in server.get_central_instances(
        a.path, "CIM_ComputerSystem", "CIM_ComputerSystem", ["CIM_ComputerSystem"],
        reference_direction="snia",
    ):
        inst = conn.GetInstance(path)
        central.append(
            {
                "classname": path.classname,
                "namespace": path.namespace,
                "Name": inst["Name"],
                "OperationalStatus": list(inst["OperationalStatus"]),
            }
        )
components = sorted(
    conn.GetInstance(p)["RegisteredName"]
    for p in conn.AssociatorNames(
        arrays[0].path, AssocClass="CIM_ReferencedProfile", Role="Antecedent", ResultRole="Dependent"
    )
)
emit(
    {
        "profiles": profiles,
        "arrays": len(arrays),
        "central": central,
        "components": components,
        "namespaces": sorted(server.namespaces),
    }
)
