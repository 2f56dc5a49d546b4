"""Traditional operations: enumerate, get, associators, references, invoke, errors.

Extra arguments: NAMESPACE CLASSNAME ASSOC_CLASS METHOD_CLASS METHOD; the method is invoked on the
first instance of METHOD_CLASS.
"""

import pywbem

from cairn_client import connect, emit, extra_args

namespace, classname, assoc_class, method_class, method = extra_args()
conn = connect(namespace=namespace)
names = conn.EnumerateInstanceNames(classname)
insts = conn.EnumerateInstances(classname)
got = conn.GetInstance(names[0])
assoc = conn.AssociatorNames(names[0], AssocClass=assoc_class)
refs = conn.References(names[0], ResultClass=assoc_class)
target = conn.EnumerateInstanceNames(method_class)[0]
ret, out = conn.InvokeMethod(method, target)


def cim_error(call):
    try:
        call()
    except pywbem.CIMError as exc:
        return exc.status_code
    return None


emit(
    {
        "names": len(names),
        "instances": len(insts),
        "get_class": got.classname,
        "associators": len(assoc),
        "references": len(refs),
        "invoke_return": int(ret),
        "err_namespace": cim_error(lambda: conn.EnumerateInstances(classname, namespace="nope")),
        "err_class": cim_error(lambda: conn.EnumerateInstances("Cairn_NoSuchClass")),
        "err_method": cim_error(
            lambda: conn.InvokeMethod("NoSuchMethod", target)
        ),
    }
)
