"""A copy into another pool as a job, step by step, over SMI-S with pywbem. Usage:
copyjob.py URL USER PASSWORD STEP [ARGS...]; prints one JSON line with the result.

Steps:
  start SOURCE NAME POOL   CreateElementReplica SyncType 7 with TargetPool, not waiting: rc and the
                           job's InstanceID
  show JOB                 the job's JobState, PercentComplete and ErrorDescription
  progress JOB             polls the job until PercentComplete is above 0 or the job has ended
  cancel JOB               RequestStateChange RequestedState 4 (Terminate): rc
  wait JOB                 polls the job until it ends: final JobState, every PercentComplete seen
"""
import json
import sys
import time

import pywbem

from cairnwbem import NS, conn, one, volume

RUNNING = (2, 3, 4)


def job_path(iid):
    return pywbem.CIMInstanceName("Cairn_ConcreteJob", keybindings={"InstanceID": iid}, namespace=NS)


def show(c, iid):
    job = c.GetInstance(job_path(iid))
    return {"state": int(job["JobState"]), "percent": int(job["PercentComplete"]),
            "error": job["ErrorDescription"]}


def poll(c, iid, done):
    seen = []
    deadline = time.monotonic() + 120
    while True:
        now = show(c, iid)
        seen.append(now["percent"])
        if done(now) or time.monotonic() > deadline:
            return dict(now, percents=seen)
        time.sleep(0.05)


def main():
    url, user, password, step, *args = sys.argv[1:]
    c = conn(url, user, password)
    if step == "start":
        source, name, pool = args
        path = next(p.path for p in c.EnumerateInstances("CIM_StoragePool")
                    if p["ElementName"] == pool and not p["Primordial"])
        rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                                 ElementName=name, SyncType=pywbem.Uint16(7),
                                 SourceElement=volume(c, source).path, TargetPool=path)
        job = out.get("Job")
        result = {"rc": int(rc), "job": job["InstanceID"] if job is not None else None}
    elif step == "show":
        result = show(c, args[0])
    elif step == "progress":
        result = poll(c, args[0], lambda j: j["percent"] > 0 or j["state"] not in RUNNING)
    elif step == "cancel":
        rc, _ = c.InvokeMethod("RequestStateChange", job_path(args[0]),
                               RequestedState=pywbem.Uint16(4))
        result = {"rc": int(rc)}
    elif step == "wait":
        result = poll(c, args[0], lambda j: j["state"] not in RUNNING)
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
