"""What Windows does first: enumerate every class of both namespaces, association classes
included, and join them itself. Reports instance counts per class and any error.

Arguments: none.
"""

import pywbem

from provider_common import connect, emit

conn = connect()
counts = {}
errors = {}
for ns in ("interop", "root/cairn"):
    for cn in conn.EnumerateClassNames(namespace=ns, DeepInheritance=True):
        try:
            insts = conn.EnumerateInstances(cn, namespace=ns)
            paths = conn.EnumerateInstanceNames(cn, namespace=ns)
            if len(insts) != len(paths):
                errors[ns + ":" + cn] = "instances %d paths %d" % (len(insts), len(paths))
            if insts:
                counts[ns + ":" + cn] = len(insts)
            for i in insts:
                if i.classname.lower() != i.path.classname.lower():
                    errors[ns + ":" + cn] = "class %s path %s" % (i.classname, i.path.classname)
        except pywbem.CIMError as e:
            errors[ns + ":" + cn] = e.status_code
emit({"counts": counts, "errors": errors})
