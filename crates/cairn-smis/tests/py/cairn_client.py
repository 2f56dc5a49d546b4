"""Shared argument handling of the Cairn SMI-S client test scripts.

Each script talks to a running Cairn SMI-S server with pywbem, prints one JSON object on stdout
with what it observed, and exits 0; the Rust test asserts on that JSON. Arguments:
URL USER PASSWORD [script-specific ...].
"""

import json
import sys

try:
    import pywbem
except ImportError as exc:  # reported by the Rust side with the interpreter path
    sys.stderr.write("pywbem is not importable: %s\n" % exc)
    sys.exit(3)


def connect(namespace="interop", **kwargs):
    """A WBEMConnection from argv[1:4]; certificate verification off (self-signed)."""
    url, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    return pywbem.WBEMConnection(
        url,
        (user, password),
        default_namespace=namespace,
        no_verification=True,
        timeout=60,
        **kwargs
    )


def extra_args():
    """The script-specific arguments after URL USER PASSWORD."""
    return sys.argv[4:]


def emit(obj):
    """Prints the observation for the Rust test."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str))
    sys.stdout.write("\n")
