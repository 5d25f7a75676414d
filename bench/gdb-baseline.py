# The baseline for `vmictl ps`: what a person does today with gdb and the debug vmlinux. Walks the
# task list over the same gdbstub and reads, for each process, roughly what ps needs: pid, comm,
# the UTS nodename (nsproxy->uts_ns->name.nodename) and the cgroup v2 directory name
# (cgroups->dfl_cgrp->kn->name). Run inside gdb, after the symbols (slid by KASLR) and the target:
#
#   gdb -nx -batch -ex 'set pagination off' \
#       -ex 'symbol-file -o 0x<virtual slide> vmlinux' \
#       -ex 'target remote /path/gdb.sock' -ex 'python WALKS=5' -x bench/gdb-baseline.py
#
# The types are looked up once (timed apart: gdb expands the DWARF units on first use, which is
# most of its time), then the list is walked WALKS times (default 1). gdb keeps no cache of target
# data, so every walk reads the guest again. Prints one line:
#   GDB-BASELINE {"lookupSeconds": S, "walkSeconds": [S, ...], "tasks": N, ...}
# It always detaches at the end: gdb -batch would otherwise kill the target when it quits, and
# QEMU's gdbstub exits QEMU on `k`.
import json
import time

import gdb

MAX_TASKS = 100000


def packet(text):
    """Sends a raw packet to the stub, returns the reply text (gdb prints `received: "..."`)."""
    out = gdb.execute("maint packet " + text, to_string=True)
    marker = 'received: "'
    at = out.find(marker)
    return out[at + len(marker):].rstrip().rstrip('"') if at >= 0 else ""


def kernel_mode_thread():
    """Selects a vCPU stopped in kernel mode: with KPTI a vCPU in user mode has a CR3 that maps
    almost no kernel memory, and gdbstub reads are virtual through the selected vCPU's CR3."""
    for thread in sorted(gdb.selected_inferior().threads(), key=lambda t: t.num):
        thread.switch()
        if int(gdb.parse_and_eval("$cs")) & 3 == 0:
            return thread.num
    return None


def prepare():
    """The one-time part: types and offsets (gdb expands the DWARF units that define them)."""
    for name in ("nsproxy", "uts_namespace", "css_set", "cgroup", "kernfs_node"):
        gdb.lookup_type("struct " + name)
    return {
        "task_ptr": gdb.lookup_type("struct task_struct").pointer(),
        "ulong": gdb.lookup_type("unsigned long"),
        "tasks_offset": int(gdb.parse_and_eval("(unsigned long)&((struct task_struct *)0)->tasks")),
        "head": int(gdb.parse_and_eval("(unsigned long)&init_task.tasks")),
    }


def walk(t):
    """init_task.tasks, each process once (list_for_each_entry), with a cycle check and a bound."""
    head = t["head"]
    seen = set()
    rows = []
    node = int(gdb.parse_and_eval("init_task.tasks.next"))
    while node != head and len(rows) < MAX_TASKS:
        if node in seen:
            raise gdb.GdbError("task list cycle at 0x%x" % node)
        seen.add(node)
        task = gdb.Value(node - t["tasks_offset"]).cast(t["task_ptr"]).dereference()
        row = {"pid": int(task["pid"]), "comm": task["comm"].string(errors="replace")}
        try:
            row["nodename"] = task["nsproxy"]["uts_ns"]["name"]["nodename"].string(errors="replace")
        except gdb.MemoryError:
            row["nodename"] = None  # an exiting task has no nsproxy
        try:
            row["cgroup"] = task["cgroups"]["dfl_cgrp"]["kn"]["name"].string(errors="replace")
        except gdb.MemoryError:
            row["cgroup"] = None
        rows.append(row)
        node = int(task["tasks"]["next"].cast(t["ulong"]))
    return rows


def main():
    result = {}
    before = packet("qqemu.PhyMemMode")
    try:
        if before == "1":
            packet("Qqemu.PhyMemMode:0")  # a vmictl backend left the stub in physical mode
        result["thread"] = kernel_mode_thread()
        if result["thread"] is None:
            raise gdb.GdbError("no vCPU is stopped in kernel mode")
        started = time.monotonic()
        types = prepare()
        result["lookupSeconds"] = time.monotonic() - started
        result["walkSeconds"] = []
        for _ in range(max(1, int(globals().get("WALKS", 1)))):
            started = time.monotonic()
            rows = walk(types)
            result["walkSeconds"].append(time.monotonic() - started)
        result["tasks"] = len(rows)
        result["nodenames"] = sorted({r["nodename"] for r in rows if r["nodename"] is not None})
        result["sample"] = rows[:3]
    except Exception as err:  # report, but never skip the detach below
        result["error"] = str(err)
    finally:
        if before == "1":
            packet("Qqemu.PhyMemMode:1")
        gdb.execute("detach", to_string=True)
    print("GDB-BASELINE " + json.dumps(result))


main()
