"""``qosinspect.Client`` is exported lazily: ``import qosinspect`` stays light."""

from __future__ import annotations

import subprocess
import sys


def test_import_qosinspect_does_not_load_the_client_until_asked() -> None:
    code = ("import sys, qosinspect\n"
            "assert 'qosinspect.client' not in sys.modules\n"
            "from qosinspect.client import Client\n"
            "assert qosinspect.Client is Client\n"
            "assert 'Client' in qosinspect.__all__\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
