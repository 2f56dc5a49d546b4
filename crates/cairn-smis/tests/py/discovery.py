"""pywbem WBEMServer discovery: interop namespace, namespaces, object manager, profiles."""

import pywbem

from cairn_client import connect, emit

conn = connect()
server = pywbem.WBEMServer(conn)
profiles = sorted(
    [
        str(p["RegisteredOrganization"]),
        p["RegisteredName"],
        p["RegisteredVersion"],
        type(p["RegisteredOrganization"]).__name__,
    ]
    for p in server.profiles
)
server_profiles = server.get_selected_profiles(registered_org="SNIA", registered_name="Server")
emit(
    {
        "interop_ns": server.interop_ns,
        "namespaces": sorted(server.namespaces),
        "brand": server.brand,
        "version": server.version,
        "cimom_class": server.cimom_inst.classname,
        "profiles": profiles,
        "server_profiles": len(server_profiles),
    }
)
