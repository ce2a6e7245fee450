"""``keep_freed_memory``: after it, a training-sized tensor allocated again reuses the pages freed by the
last one instead of faulting fresh ones from the kernel (counted with getrusage, in fresh processes)."""

import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent("""
    import resource, sys, torch
    from vitlab.engine.host_memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory() and keep_freed_memory()  # applied, and idempotent
    sizes = [5_000_000, 3_500_000, 10_000_000, 1_000_000, 12_000_000]  # a step's activations: 4 to 48 MB
    for _ in range(3):  # warm up: the first allocations fault their pages in either way
        xs = [torch.ones(n) for n in sizes]
        del xs
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        xs = [torch.ones(n) for n in sizes]
        del xs
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_instead_of_faulted_back():
    default, kept = faults("default"), faults("keep")
    assert kept < 1_000, kept  # the same pages, reused
    assert default > 10 * 10_000, default  # glibc's defaults unmap or trim them, and fault them back
