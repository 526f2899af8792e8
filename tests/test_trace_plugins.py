"""--trace counts the requests of any store, a third party's too (it keeps no counter of its
own: bams3 wraps it), with what each moved; and the store behaves as before under the wrap."""

from __future__ import annotations

import subprocess
import sys

from .test_cli import EXAMPLE

CODE = """
import sys
import bams3
from bams3.plugins import register_plugin
from tests.mutants.reference import DictStore

OBJECTS = {}

class Plugin:
    @bams3.hookimpl
    def bams3_register_storage(self, register):
        register(bams3.StorageBackend(name="thirdparty", schemes=("thirdparty",), description="a third party's",
                                      open=lambda url, create=False: DictStore(url, OBJECTS.setdefault(url, {}))))

register_plugin(Plugin(), name="thirdparty")
from bams3.cli import main
assert main(["convert", sys.argv[1], "thirdparty://x/ds.bams3", "--no-progress"]) == 0
sys.exit(main(["query", "thirdparty://x/ds.bams3", "chr1:10,000-30,000", "-c", "--trace"]))
"""


def test_trace_counts_a_third_party_store():
    p = subprocess.run([sys.executable, "-c", CODE, EXAMPLE], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    gets = [line for line in lines if line.startswith("trace: GET thirdparty://x/ds.bams3/")]
    total = [line for line in lines if line.startswith("trace: total")]
    assert gets and "_metadata.json" in gets[0], p.stderr
    assert total and not total[0].startswith("trace: total 0 requests"), p.stderr
    n = int(total[0].split()[2])
    assert n == len([line for line in lines if line.startswith("trace: ") and not line.startswith("trace: total")])
    import pysam

    assert int(p.stdout) == int(pysam.view("-c", EXAMPLE, "chr1:10,000-30,000"))
