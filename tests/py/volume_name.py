"""Prints the SMI-S Name of a volume, as management software reads it:
volume_name.py URL USER PASSWORD ELEMENT_NAME -> {"name": "..."}"""
import json
import sys

from cairnwbem import conn

url, user, password, element = sys.argv[1:]
c = conn(url, user, password)
names = [v["Name"] for v in c.EnumerateInstances("CIM_StorageVolume") if v["ElementName"] == element]
if len(names) != 1:
    raise SystemExit(f"expected one volume {element}, found {len(names)}")
print(json.dumps({"name": names[0]}))
