"""Build hook: compile the per-request hot path with mypyc.

The modules listed in src/tunnelgate/compiled.py (the one list, also read by the Makefile and
the test suite) are plain, fully typed Python; mypyc turns them into C extensions, which took
the gateway from about 49 to 25 us of CPU per request and the client from 35 to 18
(docs/performance.md).

With TUNNELGATE_PURE_PYTHON=1 set at install time nothing is compiled and the same sources
run interpreted (`make test` runs the end-to-end tests on such an install too). Otherwise
compiling is not optional: mypyc comes with the build requirements (pyproject.toml), and
without a C compiler the install fails rather than quietly giving a gateway at half speed.
"""

import os
import runpy

from setuptools import setup

# By path, not by import: this build environment lacks the package's dependencies, and
# compiled.py needs none of them.
LISTED = runpy.run_path("src/tunnelgate/compiled.py")
COMPILED = [LISTED["source"](module) for module in LISTED["MODULES"]]

ext_modules = []
if os.environ.get("TUNNELGATE_PURE_PYTHON") != "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, group_name="tunnelgate_speedups")

setup(ext_modules=ext_modules)
