#!/usr/bin/python3
"""libsolv side of the solver benchmark (bench/solve.rs runs it).

usage: solve_libsolv.py PRIMARY_XML_GZ ARCH < names   (one job name a line)
Prints one JSON object: parse and solve seconds, problem count and the
NEVRAs of the resulting closure. Recommends are ignored and implicit
obsoletes use colours, so that multilib behaves like our solver's.
"""
import json
import sys
import time

import solv

path, arch = sys.argv[1], sys.argv[2]
names = [l.strip() for l in sys.stdin if l.strip()]

t0 = time.perf_counter()
pool = solv.Pool()
pool.setarch(arch)
pool.set_flag(solv.Pool.POOL_FLAG_IMPLICITOBSOLETEUSESCOLORS, 1)
repo = pool.add_repo("bench")
f = solv.xfopen(path)
repo.add_rpmmd(f, None, 0)
f.close()
pool.addfileprovides()
pool.createwhatprovides()
t1 = time.perf_counter()

jobs = []
for n in names:
    sel = pool.select(n, solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES)
    jobs += sel.jobs(solv.Job.SOLVER_INSTALL)
solver = pool.Solver()
solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
problems = solver.solve(jobs)
trans = solver.transaction()
t2 = time.perf_counter()
pkgs = sorted(str(s) for s in trans.newsolvables())
print(json.dumps({
    "parse_s": t1 - t0,
    "solve_s": t2 - t1,
    "problems": [str(p) for p in problems],
    "packages": pkgs,
}))
