#!/usr/bin/python3
"""libsolv side of the solver benchmark (bench/solve.rs runs it).

usage: solve_libsolv.py PRIMARY_XML_GZ|REPO.solv ARCH [--check] [--multilib] < names
A path ending in `.solv` is libsolv's own binary cache (written by
rpmmd2solv), loaded with add_solv: the fair warm comparison.
With --check the lines are NEVRAs of a closure to verify: each is installed
exactly, and libsolv must find no problem and add nothing. Prints one JSON object: parse and solve seconds, problem count and the
NEVRAs of the resulting closure. Recommends are ignored, implicit
obsoletes use colours, and other arches than ARCH and noarch are locked out
unless --multilib is given (as our request's multilib flag).
"""
import json
import sys
import time

import solv

path, arch = sys.argv[1], sys.argv[2]
check = "--check" in sys.argv[3:]
multilib = "--multilib" in sys.argv[3:]
names = [l.strip() for l in sys.stdin if l.strip()]

t0, c0 = time.perf_counter(), time.process_time()
pool = solv.Pool()
# Debian builds of libsolv default to Debian version semantics, under which
# `zlib = 1.2.3` does not match `zlib = 1.2.3-105`; this is rpm data.
pool.setdisttype(solv.Pool.DISTTYPE_RPM)
pool.setarch(arch)
pool.set_flag(solv.Pool.POOL_FLAG_IMPLICITOBSOLETEUSESCOLORS, 1)
repo = pool.add_repo("bench")
f = solv.xfopen(path)
if path.endswith(".solv"):
    repo.add_solv(f)
else:
    repo.add_rpmmd(f, None, 0)
f.close()
pool.addfileprovides()
pool.createwhatprovides()
t1, c1 = time.perf_counter(), time.process_time()

jobs = []
# Our request has multilib off: lock every package of another arch so that
# libsolv cannot pick 32-bit builds either.
for s in [] if multilib else pool.solvables_iter():
    if s.arch not in (arch, "noarch"):
        jobs.append(pool.Job(solv.Job.SOLVER_LOCK | solv.Job.SOLVER_SOLVABLE, s.id))
if check:
    by_nevra = {str(s): s for s in pool.solvables_iter()}
    missing = [n for n in names if n not in by_nevra]
    for n in names:
        if n in by_nevra:
            jobs.append(pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE, by_nevra[n].id))
else:
    missing = []
    for n in names:
        sel = pool.select(n, solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES)
        jobs += sel.jobs(solv.Job.SOLVER_INSTALL)
solver = pool.Solver()
solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
problems = solver.solve(jobs)
trans = solver.transaction()
t2, c2 = time.perf_counter(), time.process_time()
pkgs = sorted(str(s) for s in trans.newsolvables())
print(json.dumps({
    "parse_s": t1 - t0,
    "solve_s": t2 - t1,
    "parse_cpu_s": c1 - c0,
    "solve_cpu_s": c2 - c1,
    "problems": [str(p) for p in problems] + ["unknown " + n for n in missing],
    "packages": pkgs,
}))
