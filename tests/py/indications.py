"""Indications from a running cairn daemon, received by pywbem's WBEMListener, subscribed with
pywbem's WBEMSubscriptionManager. Usage: indications.py URL USER PASSWORD STEP LISTENER_PORT;
prints one JSON line with the result, exits non-zero on a failed check.

Steps:
  subscribe   subscribes (permanent destination, a volume filter and a job filter), then checks
              the lifecycle and modification indications of volume changes, exactly once and in
              order, nothing on the job filter, and delivery after the listener was down
  restarted   after a daemon restart: the subscriptions are still there and still deliver
  https       LISTENER_PORT is "P1,P2" and four more arguments follow: certificate and key of a
              listener the daemon trusts (on P1), certificate and key of one it does not (on P2);
              only the trusted one receives: the daemon's attempt at the other ends in the TLS
              handshake, which a bare TLS server on P2 waits for
  copy        (a daemon with pools pool0 and pool1) a snapshot into the other pool: the job's
              creation, its modifications up to Completed, and the StorageSynchronized's
              modification to Synchronized
  alerts      one more argument follows: the daemon's NBD address (host:port). Subscribes to
              predefined filters (which cannot be deleted), sets pool0's LowSpaceWarningThreshold
              just under its free space, fills a volume over NBD (qemu-io) past it and deletes the
              volume again: one low-space alert (SNIA DRM28) and one clearing alert (DRM30)
  masking     (a daemon with iSCSI) the predefined Masking and Mapping filters: a masking set
              made with ExposePaths (its controller, unit and groups created), a volume hidden
              (its unit deleted) and the set removed (controller and groups deleted)
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback

import pywbem
from pywbem import WBEMListener, WBEMServer, WBEMSubscriptionManager

from cairnwbem import NS, conn, fail, one, pool_path

DEADLINE_SECS = 60
SUBMGR = "cairntest"
VOLUMES = ("SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA CIM_StorageVolume "
           "AND NOT SourceInstance.CIM_StorageVolume::ElementName = 'ignored'")
JOBS = "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA CIM_ConcreteJob"
SYNCS = "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA CIM_StorageSynchronized"


class Inbox:
    """Indications as the listener receives them, and a wait for a count of them."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def receive(self, indication, host):
        with self.cond:
            self.items.append(indication)
            self.cond.notify_all()

    def wait_for(self, count):
        end = time.monotonic() + DEADLINE_SECS
        with self.cond:
            while len(self.items) < count:
                left = end - time.monotonic()
                if left <= 0:
                    fail(f"expected {count} indications, got {summary(self.items)}")
                self.cond.wait(left)
            return list(self.items)


def summary(items):
    out = []
    for i in items:
        src = i["SourceInstance"]
        name = src.get("ElementName") if src is not None else None
        out.append((i.classname, name, i["IndicationFilterName"], i["SequenceNumber"]))
    return out


def listener(port, cert=None, key=None):
    inbox = Inbox()
    if cert is None:
        lis = WBEMListener("127.0.0.1", http_port=port, https_port=None)
    else:
        lis = WBEMListener("127.0.0.1", http_port=None, https_port=port, certfile=cert,
                           keyfile=key)
    lis.add_callback(inbox.receive)
    lis.start()
    return lis, inbox


def create_volume(c, name):
    rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                             one(c, "CIM_StorageConfigurationService"),
                             ElementName=name, ElementType=pywbem.Uint16(5),
                             InPool=pool_path(c), Size=pywbem.Uint64(1 << 20))
    if rc != 0:
        fail(f"create {name}: {rc}")
    return out["TheElement"]


def delete_volume(c, path):
    rc, _ = c.InvokeMethod("ReturnToStoragePool", one(c, "CIM_StorageConfigurationService"),
                           TheElement=path)
    if rc != 0:
        fail(f"delete: {rc}")


def rename(c, path, name):
    inst = c.GetInstance(path)
    inst["ElementName"] = name
    c.ModifyInstance(inst, PropertyList=["ElementName"])


def snapshot(c, source, name):
    rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                             ElementName=name, SyncType=pywbem.Uint16(7),
                             SourceElement=source, WaitForCopyState=pywbem.Uint16(4))
    if rc != 0:
        fail(f"snapshot {name}: {rc}")


def from_filter(items, name):
    return [i for i in items if i["IndicationFilterName"] == f"{SUBMGR}:{name}"]


def expect(items, wanted, syncs=0):
    """items must be, from the volume filter, exactly `wanted` [(class, ElementName, previous
    ElementName)] in order, `syncs` snapshot StorageSynchronized creations from the sync filter,
    nothing else, with consecutive sequence numbers in one context."""
    got = []
    for i in from_filter(items, "vols"):
        prev = i.get("PreviousInstance")
        if not isinstance(i["SourceInstance"], pywbem.CIMInstance):
            fail("SourceInstance is not an embedded instance")
        got.append((i.classname, i["SourceInstance"]["ElementName"],
                    prev["ElementName"] if prev is not None else None))
    if got != wanted:
        fail(f"expected {wanted}, got {got}")
    sync = from_filter(items, "syncs")
    if len(sync) != syncs or any(int(i["SourceInstance"]["SyncType"]) != 7 for i in sync):
        fail(f"expected {syncs} snapshot synchronizations, got {summary(sync)}")
    if len(got) + len(sync) != len(items):
        fail(f"indications from other filters: {summary(items)}")
    seqs = [int(i["SequenceNumber"]) for i in items]
    contexts = {i["SequenceContext"] for i in items}
    if len(contexts) != 1 or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        fail(f"sequence {contexts} {seqs}")


def subscribe(c, port):
    server = WBEMServer(c)
    sm = WBEMSubscriptionManager(subscription_manager_id=SUBMGR)
    sid = sm.add_server(server)
    dest = sm.add_destination(sid, f"http://127.0.0.1:{port}", owned=False,
                              name=f"{SUBMGR}:lis")
    vols = sm.add_filter(sid, NS, VOLUMES, query_language="DMTF:CQL", owned=False,
                         name=f"{SUBMGR}:vols")
    jobs = sm.add_filter(sid, NS, JOBS, query_language="WQL", owned=False,
                         name=f"{SUBMGR}:jobs")
    sm.add_subscriptions(sid, vols.path, [dest.path], owned=False)
    syncs = sm.add_filter(sid, NS, SYNCS, query_language="WQL", owned=False,
                          name=f"{SUBMGR}:syncs")
    sm.add_subscriptions(sid, jobs.path, [dest.path], owned=False)
    sm.add_subscriptions(sid, syncs.path, [dest.path], owned=False)
    return sm, sid


def step_subscribe(c, port):
    lis, inbox = listener(port)
    subscribe(c, port)
    a = create_volume(c, "ind-a")
    b = create_volume(c, "ind-b")
    create_volume(c, "ignored")
    rename(c, a, "ind-a2")
    delete_volume(c, b)
    snapshot(c, a, "ind-snap")
    wanted = [("CIM_InstCreation", "ind-a", None), ("CIM_InstCreation", "ind-b", None),
              ("CIM_InstModification", "ind-a2", "ind-a"), ("CIM_InstDeletion", "ind-b", None),
              ("CIM_InstCreation", "ind-snap", None)]
    expect(inbox.wait_for(len(wanted) + 1), wanted, syncs=1)
    # The listener goes away for less than the retry window: what it missed arrives after.
    lis.stop()
    create_volume(c, "ind-c")
    time.sleep(0.5)  # the daemon's first attempt fails while nobody listens
    lis2, inbox2 = listener(port)
    got = inbox2.wait_for(1)
    expect(got, [("CIM_InstCreation", "ind-c", None)])
    seq_before = int(inbox.items[-1]["SequenceNumber"])
    if int(got[0]["SequenceNumber"]) != seq_before + 1:
        fail("sequence number gap after the listener came back")
    # Nothing else arrives (nothing from the job filter, no duplicates): a marker made after
    # everything else is delivered after anything queued before it, so once it is in, whatever
    # else came is in too.
    create_volume(c, "ind-marker")
    got = inbox2.wait_for(2)
    expect(got, [("CIM_InstCreation", "ind-c", None), ("CIM_InstCreation", "ind-marker", None)])
    if len(inbox.items) != len(wanted) + 1:
        fail(f"extra indications: {summary(inbox.items)} {summary(inbox2.items)}")
    lis2.stop()
    return {"ok": True, "received": len(inbox.items) + len(inbox2.items)}


def step_restarted(c, port):
    filters = [f["Name"] for f in c.EnumerateInstances("CIM_IndicationFilter", namespace="interop")
               if not f["Name"].startswith(("SNIA:", "CAIRN:"))]
    subs = c.EnumerateInstanceNames("CIM_IndicationSubscription", namespace="interop")
    # Three of the four: the CLI's subscription was removed (pywbemcli remove-subscription)
    # before the restart; its filter and destination stay.
    if len(subs) != 3 or not any(n.endswith(":vols") for n in filters):
        fail(f"after restart: filters {filters}, {len(subs)} subscriptions")
    lis, inbox = listener(port)
    create_volume(c, "ind-d")
    got = inbox.wait_for(1)
    expect(got, [("CIM_InstCreation", "ind-d", None)])
    lis.stop()
    return {"ok": True, "filters": sorted(filters)}


class RefusingListener:
    """A TLS server with a certificate the daemon must not trust, in place of a listener: it
    records how each connection ends. A daemon that refuses the certificate aborts the
    handshake ("refused"); one that accepted it would go on to post its indication, which is
    read and recorded ("received"). Each outcome is an event to wait for, not a quiet period."""

    def __init__(self, port, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", port))
        self.outcomes = []
        self.cond = threading.Condition()
        threading.Thread(target=self.serve, daemon=True).start()

    def record(self, outcome):
        with self.cond:
            self.outcomes.append(outcome)
            self.cond.notify_all()

    def serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return  # closed
            raw.settimeout(DEADLINE_SECS)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as tls:
                    data = tls.recv(65536)
                self.record(("received", data[:120].decode("latin-1")))
            except (ssl.SSLError, ConnectionError, socket.timeout) as e:
                self.record(("refused", str(e)))

    def wait_for(self, count):
        end = time.monotonic() + DEADLINE_SECS
        with self.cond:
            while len(self.outcomes) < count:
                left = end - time.monotonic()
                if left <= 0:
                    fail(f"the daemon never tried the untrusted listener: {self.outcomes}")
                self.cond.wait(left)
            return list(self.outcomes)

    def close(self):
        self.sock.close()


def step_https(c, ports, trusted_cert, trusted_key, other_cert, other_key):
    p1, p2 = (int(p) for p in ports.split(","))
    lis1, inbox1 = listener(p1, trusted_cert, trusted_key)
    untrusted = RefusingListener(p2, other_cert, other_key)
    sm = WBEMSubscriptionManager(subscription_manager_id=SUBMGR)
    sid = sm.add_server(WBEMServer(c))
    vols = sm.add_filter(sid, NS, VOLUMES, query_language="DMTF:CQL", owned=True,
                         filter_id="vols")
    for i, port in enumerate((p1, p2)):
        dest = sm.add_destination(sid, f"https://127.0.0.1:{port}", owned=True,
                                  destination_id=f"tls{i}")
        sm.add_subscriptions(sid, vols.path, [dest.path], owned=True)
    create_volume(c, "tls-vol")
    got = inbox1.wait_for(1)
    if got[0]["SourceInstance"]["ElementName"] != "tls-vol":
        fail(f"trusted listener got {summary(got)}")
    # The daemon's first attempt at the untrusted destination (its queue is delivered in order,
    # so that is the tls-vol indication) must end in the handshake; later retries of it too.
    first = untrusted.wait_for(1)[0]
    received = [o for o in untrusted.outcomes if o[0] == "received"]
    if first[0] != "refused" or received:
        fail(f"a listener with an untrusted certificate received {untrusted.outcomes}")
    sm.remove_server(sid)
    lis1.stop()
    untrusted.close()
    return {"ok": True, "untrusted": first[1]}


def step_copy(c, port):
    lis, inbox = listener(port)
    server = WBEMServer(c)
    sm = WBEMSubscriptionManager(subscription_manager_id=SUBMGR)
    sid = sm.add_server(server)
    dest = sm.add_destination(sid, f"http://127.0.0.1:{port}", owned=True,
                              destination_id="copylis")
    jobs = sm.add_filter(sid, NS, "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA "
                         "CIM_ConcreteJob", query_language="WQL", owned=True,
                         filter_id="jobs")
    syncs = sm.add_filter(sid, NS, "SELECT * FROM CIM_InstModification WHERE SourceInstance ISA "
                          "CIM_StorageSynchronized AND SourceInstance.CIM_StorageSynchronized::"
                          "CopyState <> PreviousInstance.CIM_StorageSynchronized::CopyState",
                          query_language="DMTF:CQL", owned=True, filter_id="syncs")
    # The synchronization's creation too: a copy that ends before the daemon first reads the new
    # synchronization shows it created already Synchronized, with no modification after.
    sync_created = sm.add_filter(sid, NS, "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA "
                                 "CIM_StorageSynchronized", query_language="DMTF:CQL", owned=True,
                                 filter_id="synccreated")
    sm.add_subscriptions(sid, jobs.path, [dest.path], owned=True)
    sm.add_subscriptions(sid, syncs.path, [dest.path], owned=True)
    sm.add_subscriptions(sid, sync_created.path, [dest.path], owned=True)
    source = create_volume(c, "copy-src")
    rc, out = c.InvokeMethod("CreateElementReplica", one(c, "CIM_ReplicationService"),
                             ElementName="copy-dst", SyncType=pywbem.Uint16(7),
                             SourceElement=source, TargetPool=pool_path(c, "pool1"),
                             WaitForCopyState=pywbem.Uint16(4))
    if rc != 4096:
        fail(f"copy into another pool answered {rc}")
    end = time.monotonic() + DEADLINE_SECS
    while True:
        items = inbox.wait_for(len(inbox.items) + 1)
        last = items[-1]["SourceInstance"]
        if last.classname.endswith("ConcreteJob") and int(last["JobState"]) == 7:
            break
        if time.monotonic() > end:
            fail(f"no Completed job: {summary(items)}")
    job = [i for i in items if i["SourceInstance"].classname.endswith("ConcreteJob")]
    if job[0].classname != "CIM_InstCreation" or int(job[0]["SourceInstance"]["JobState"]) != 4:
        fail(f"the job's first indication: {job[0]}")
    states = [int(i["SourceInstance"]["JobState"]) for i in job]
    percents = [int(i["SourceInstance"]["PercentComplete"]) for i in job]
    if states[-1] != 7 or percents[-1] != 100 or percents != sorted(percents):
        fail(f"job states {states}, percents {percents}")
    if int(job[-1]["PreviousInstance"]["JobState"]) != 4:
        fail("the Completed modification's PreviousInstance is not the running job")
    # The synchronization reaches Synchronized (CopyState 4) with the job, or right after it:
    # created so, or modified to it.
    def syncs_seen():
        return [i for i in inbox.items if i["SourceInstance"].classname.endswith("StorageSynchronized")]
    while [int(i["SourceInstance"]["CopyState"]) for i in syncs_seen()][-1:] != [4]:
        if time.monotonic() > end:
            fail(f"synchronization: {summary(syncs_seen())}")
        inbox.wait_for(len(inbox.items) + 1)
    sync = syncs_seen()
    if any(i.classname == "CIM_InstModification" and int(i["PreviousInstance"]["CopyState"]) == 4
           for i in sync):
        fail(f"a synchronization modified from Synchronized: {summary(sync)}")
    sm.remove_server(sid)
    lis.stop()
    return {"ok": True, "job": len(job), "percents": percents}


PREDEFINED = ("SNIA:Thin Provisioning:StoragePoolLowSpaceWarning",
              "SNIA:Thin Provisioning:StoragePoolLowSpaceCleared")
THRESHOLD_CHANGED = ("SELECT * FROM CIM_InstModification WHERE SourceInstance ISA CIM_StoragePool "
                     "AND SourceInstance.CIM_StoragePool::LowSpaceWarningThreshold <> "
                     "PreviousInstance.CIM_StoragePool::LowSpaceWarningThreshold")


def set_threshold(c, pool, percent):
    inst = c.GetInstance(pool)
    inst["LowSpaceWarningThreshold"] = pywbem.Uint16(percent)
    c.ModifyInstance(inst, PropertyList=["LowSpaceWarningThreshold"])
    if int(c.GetInstance(pool)["LowSpaceWarningThreshold"]) != percent:
        fail("LowSpaceWarningThreshold not set")


def check_alert(alert, message_id, severity, pool, system):
    want = {"OwningEntity": "SNIA", "MessageID": message_id, "AlertType": 5,
            "PerceivedSeverity": severity, "ProbableCause": 52, "AlertingElementFormat": 2,
            "SystemName": system}
    for k, v in want.items():
        if alert[k] != v:
            fail(f"{message_id}: {k} is {alert[k]!r}, not {v!r}")
    if list(alert["MessageArguments"]) != ["Pool", pool["PoolID"]]:
        fail(f"{message_id}: MessageArguments {alert['MessageArguments']}")
    if pool["InstanceID"] not in alert["AlertingManagedElement"]:
        fail(f"{message_id}: AlertingManagedElement {alert['AlertingManagedElement']}")
    if not alert["Message"] or not alert["IndicationTime"]:
        fail(f"{message_id}: no Message or IndicationTime")


def step_alerts(c, port, nbd):
    lis, inbox = listener(port)
    sm = WBEMSubscriptionManager(subscription_manager_id=SUBMGR)
    sid = sm.add_server(WBEMServer(c))
    dest = sm.add_destination(sid, f"http://127.0.0.1:{port}", owned=True,
                              destination_id="alertlis")
    filters = {f["Name"]: f.path
               for f in c.EnumerateInstances("CIM_IndicationFilter", namespace="interop")}
    for name in PREDEFINED:
        if name not in filters:
            fail(f"no predefined filter {name}: {sorted(filters)}")
        sm.add_subscriptions(sid, filters[name], [dest.path], owned=True)
    try:
        c.DeleteInstance(filters[PREDEFINED[0]])
        fail("a predefined filter was deleted")
    except pywbem.CIMError as e:
        if e.status_code != pywbem.CIM_ERR_ACCESS_DENIED:
            fail(f"deleting a predefined filter: {e}")
    pool = c.GetInstance(pool_path(c))
    total, free = int(pool["TotalManagedSpace"]), int(pool["RemainingManagedSpace"])
    # Just under the free space now; writing 30% of the pool crosses it.
    percent = free * 100 // total - 20
    fill = total * 3 // 10 // 65536 * 65536
    rc, out = c.InvokeMethod("CreateOrModifyElementFromStoragePool",
                             one(c, "CIM_StorageConfigurationService"),
                             ElementName="fill", ElementType=pywbem.Uint16(5),
                             InPool=pool.path, Size=pywbem.Uint64(fill * 2))
    if rc != 0:
        fail(f"create fill: {rc}")
    set_threshold(c, pool.path, percent)
    subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P 0x5a 0 {fill}",
                    f"nbd://{nbd}/fill"], check=True, capture_output=True)
    low = inbox.wait_for(1)[0]
    system = one(c, "Cairn_StorageSystem").keybindings["Name"]
    check_alert(low, "DRM28", 4, pool, system)
    if low["IndicationFilterName"] != PREDEFINED[0]:
        fail(f"DRM28 through {low['IndicationFilterName']}")
    delete_volume(c, out["TheElement"])
    cleared = inbox.wait_for(2)[1]
    check_alert(cleared, "DRM30", 2, pool, system)
    # A threshold far below, set once the alert is in: its modification comes after anything
    # queued before it, so two alerts then mean two alerts in all.
    marker = sm.add_filter(sid, NS, THRESHOLD_CHANGED, query_language="DMTF:CQL", owned=True,
                           filter_id="threshold")
    sm.add_subscriptions(sid, marker.path, [dest.path], owned=True)
    set_threshold(c, pool.path, 1)
    got = inbox.wait_for(3)
    if [i.classname for i in got] != ["CIM_AlertIndication"] * 2 + ["CIM_InstModification"]:
        fail(f"alerts: {[(i.classname, i.get('MessageID')) for i in got]}")
    sm.remove_server(sid)
    lis.stop()
    return {"ok": True, "threshold": percent, "filled": fill}


MASKING_FILTERS = ("ProtocolControllerCreation", "ProtocolControllerDeletion",
                   "ProtocolControllerForUnitCreation", "ProtocolControllerForUnitDeletion")
GROUP_FILTERS = ("MaskingGroupCreation", "MaskingGroupDeletion")


def kinds(items):
    """(indication, class of the source without its prefix) of each item, sorted."""
    return sorted((i.classname, i["SourceInstance"].classname.split("_", 1)[1]) for i in items)


def step_masking(c, port):
    lis, inbox = listener(port)
    sm = WBEMSubscriptionManager(subscription_manager_id=SUBMGR)
    sid = sm.add_server(WBEMServer(c))
    dest = sm.add_destination(sid, f"http://127.0.0.1:{port}", owned=True,
                              destination_id="masklis")
    filters = {f["Name"]: f.path
               for f in c.EnumerateInstances("CIM_IndicationFilter", namespace="interop")}
    names = [f"SNIA:Masking and Mapping:{n}" for n in MASKING_FILTERS] + \
        [f"SNIA:Group Masking and Mapping:{n}" for n in GROUP_FILTERS]
    for name in names:
        if name not in filters:
            fail(f"no predefined filter {name}")
        sm.add_subscriptions(sid, filters[name], [dest.path], owned=True)
    vol = create_volume(c, "mask-vol")
    lu = c.GetInstance(vol, PropertyList=["Name"])["Name"]
    ccs = one(c, "Cairn_ControllerConfigurationService")
    port_name = c.EnumerateInstances("CIM_iSCSIProtocolEndpoint")[0]["Name"]
    rc, out = c.InvokeMethod("ExposePaths", ccs, InitiatorPortIDs=["iqn.2026-01.test:host1"],
                             TargetPortIDs=[port_name], LUNames=[lu],
                             DeviceAccesses=[pywbem.Uint16(2)])
    if rc != 0:
        fail(f"ExposePaths: {rc}")
    (spc,) = out["ProtocolControllers"]
    created = [("CIM_InstCreation", k) for k in ("DeviceMaskingGroup", "InitiatorMaskingGroup",
               "ProtocolControllerForUnit", "SCSIProtocolController", "TargetMaskingGroup")]
    got = inbox.wait_for(len(created))
    if kinds(got) != created:
        fail(f"after ExposePaths: {kinds(got)}")
    unit = [i for i in got if i["SourceInstance"].classname.endswith("ForUnit")][0]
    if unit["SourceInstance"]["DeviceNumber"] != "0":
        fail(f"unit: {unit['SourceInstance']}")
    rc, _ = c.InvokeMethod("HidePaths", ccs, ProtocolControllers=[spc], LUNames=[lu])
    if rc != 0:
        fail(f"HidePaths: {rc}")
    got = inbox.wait_for(len(created) + 1)[len(created):]
    if kinds(got) != [("CIM_InstDeletion", "ProtocolControllerForUnit")]:
        fail(f"after HidePaths: {kinds(got)}")
    rc, _ = c.InvokeMethod("DeleteProtocolController", ccs, ProtocolController=spc)
    if rc != 0:
        fail(f"DeleteProtocolController: {rc}")
    deleted = [("CIM_InstDeletion", k) for k in ("DeviceMaskingGroup", "InitiatorMaskingGroup",
               "SCSIProtocolController", "TargetMaskingGroup")]
    # A volume created last is a marker: its creation comes after every indication the removal
    # made, so nothing more is on its way when it is in.
    vols = sm.add_filter(sid, NS, "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA "
                         "CIM_StorageVolume", query_language="WQL", owned=True, filter_id="mvols")
    sm.add_subscriptions(sid, vols.path, [dest.path], owned=True)
    create_volume(c, "mask-marker")
    total = len(created) + 1 + len(deleted) + 1
    got = inbox.wait_for(total)
    if kinds(got[len(created) + 1:-1]) != deleted or len(inbox.items) != total:
        fail(f"after DeleteProtocolController: {kinds(inbox.items[len(created) + 1:])}")
    if got[-1]["SourceInstance"]["ElementName"] != "mask-marker":
        fail(f"last: {summary(got[-1:])}")
    sm.remove_server(sid)
    lis.stop()
    return {"ok": True, "received": len(inbox.items)}


def main():
    url, user, password, step, port, *more = sys.argv[1:]
    c = conn(url, user, password)
    if step == "subscribe":
        result = step_subscribe(c, int(port))
    elif step == "restarted":
        result = step_restarted(c, int(port))
    elif step == "https":
        result = step_https(c, port, *more)
    elif step == "copy":
        result = step_copy(c, int(port))
    elif step == "masking":
        result = step_masking(c, int(port))
    elif step == "alerts":
        result = step_alerts(c, int(port), *more)
    else:
        fail(f"unknown step {step}")
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - any failure ends the run with its traceback
        traceback.print_exc()
        fail("exception")
