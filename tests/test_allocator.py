"""The allocator setting keeps a step's freed tensor pages mapped: far fewer page faults per repeated step."""
import subprocess
import sys
from pathlib import Path

import pytest

from mtbench import allocator

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import resource, sys, torch
sys.path.insert(0, {root!r})
if {tuned}:
    from mtbench.allocator import keep_freed_memory
    assert keep_freed_memory()
def step():  # a 64 MB activation and a 12 MB one, freed at the end of the step
    return float(torch.ones(16 * 2**20)[0] + torch.ones(3 * 2**20)[0])
for _ in range(3):  # the heap settles into its layout
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", CODE.format(root=str(ROOT), tuned=tuned)], capture_output=True,
                         text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not allocator.keep_freed_memory(), reason="needs glibc's mallopt (Linux)")
def test_repeated_steps_stop_faulting_pages():
    plain, tuned = _faults(False), _faults(True)
    assert plain > 10 * 16384  # 64 MB = 16,384 pages faulted again in each of the 10 steps
    assert tuned < plain / 4


def test_idempotent():
    assert allocator.keep_freed_memory() == allocator.keep_freed_memory()
