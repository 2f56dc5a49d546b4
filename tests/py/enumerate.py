"""Every volume of a running cairn daemon, as pywbem enumerates it. Usage: enumerate.py URL USER
PASSWORD MODE, MODE `pull` (OpenEnumerateInstances + PullInstancesWithPath, 1,000 a batch),
`whole` (one EnumerateInstances) or `names` (one EnumerateInstanceNames); prints one JSON line:
the volumes seen, the distinct ones and the seconds the client took.
"""
import json
import sys
import time

from cairnwbem import conn

url, user, password, mode = sys.argv[1:5]
c = conn(url, user, password, timeout=600)
started = time.monotonic()
if mode == "pull":
    found = c.IterEnumerateInstances("CIM_StorageVolume", MaxObjectCount=1000)
elif mode == "names":
    found = c.EnumerateInstanceNames("CIM_StorageVolume")
else:
    found = c.EnumerateInstances("CIM_StorageVolume")
# An instance and an instance path both give their keys by name.
ids = [i["DeviceID"] for i in found]
print(json.dumps({"count": len(ids), "distinct": len(set(ids)),
                  "seconds": round(time.monotonic() - started, 2)}))
