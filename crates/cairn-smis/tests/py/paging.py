"""IterEnumerateInstances with a small MaxObjectCount: pages through pull operations.

Extra arguments: NAMESPACE CLASSNAME MAX_OBJECT_COUNT.
"""

from cairn_client import connect, emit, extra_args

namespace, classname, max_count = extra_args()
conn = connect(namespace=namespace, stats_enabled=True, use_pull_operations=True)
paths = [
    str(inst.path)
    for inst in conn.IterEnumerateInstances(classname, MaxObjectCount=int(max_count))
]
ops = {name: stat.count for name, stat in conn.statistics.snapshot()}
emit({"count": len(paths), "distinct": len(set(paths)), "ops": ops})
