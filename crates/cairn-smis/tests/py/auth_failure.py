"""A wrong password must surface as pywbem.AuthError (HTTP 401), not as any other error."""

import pywbem

from cairn_client import connect, emit

conn = connect()
try:
    conn.EnumerateInstanceNames("CIM_RegisteredProfile")
    outcome = "no error"
except pywbem.AuthError:
    outcome = "AuthError"
except pywbem.Error as exc:
    outcome = "%s: %s" % (type(exc).__name__, exc)
emit({"outcome": outcome})
