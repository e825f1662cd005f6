# The Python template of `npm run bench`'s fork rows: fills 50 MB, then forks.
#   plain N  — unsandboxed baseline: a plain os.fork loop of N children, timed here
#   exit     — corral template; each clone exits at once
#   hold     — corral template; each clone reads its data and sleeps (memory row)
import os
import sys
import time

MB = 50
data = bytearray(b"\x5a") * (MB << 20)
mode = sys.argv[1]


def work():
    # One byte per page: every clone reads all of the template's memory.
    return sum(data[i] for i in range(0, len(data), 4096 * 64))


if mode == "plain":
    n = int(sys.argv[2])
    t = time.perf_counter()
    for _ in range(n):
        if os.fork() == 0:
            os._exit(0)
    for _ in range(n):
        os.wait()
    print(int((time.perf_counter() - t) * 1e6))
    sys.exit(0)

import corral_fork

clone = corral_fork.serve()
if clone is None:
    sys.exit(0)
if mode == "hold":
    work()
    time.sleep(600)
os._exit(0)
