"""GetClass('CIM_RegisteredProfile', LocalOnly=False, IncludeQualifiers=True) as WBEMServer does."""

from cairn_client import connect, emit

conn = connect()
cls = conn.GetClass("CIM_RegisteredProfile", LocalOnly=False, IncludeQualifiers=True)
org = cls.properties["RegisteredOrganization"]
emit(
    {
        "classname": cls.classname,
        "superclass": cls.superclass,
        "org_type": org.type,
        "org_valuemap": list(org.qualifiers["ValueMap"].value),
        "org_values": list(org.qualifiers["Values"].value),
        "version_type": cls.properties["RegisteredVersion"].type,
        "properties": sorted(cls.properties.keys()),
    }
)
