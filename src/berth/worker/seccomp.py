"""The seccomp profile every OCI container gets (function containers, image build steps, sandboxes).

A denylist, not an allowlist: the default action is SCMP_ACT_ALLOW and the syscalls below fail with
EPERM. An allowlist (Docker's profile) also blocks syscalls that newer libcs and tools start using, and
user code here is arbitrary Python with native extensions; what matters is the set of calls that reach
past the container's namespaces into the host kernel's global state. Those are:

- mounts and root changes: mount, umount2, pivot_root and the new mount API (fsopen, fsconfig, fsmount,
  fspick, open_tree, move_mount, mount_setattr). A container must not remount its bind mounts read-write,
  mount /proc or /sys of its own, or stack a filesystem over what it was given.
- new namespaces: unshare, setns, and clone with any CLONE_NEW* flag (matched one flag per rule on the
  flags argument, arg 0 on x86_64/aarch64). A user namespace would hand the process a full capability
  set inside it and with it the kernel surface that user namespaces open (the source of many local
  privilege escalations). clone3 passes its flags in a struct seccomp cannot read, so it returns ENOSYS
  and the libc falls back to clone, which the rules above do see (Docker does the same).
- the kernel keyring (keyctl, add_key, request_key): keyrings are not namespaced.
- bpf, perf_event_open, userfaultfd, io_uring_*: large kernel attack surfaces that ordinary Python code
  does not need (userfaultfd is a standard tool for winning kernel races).
- modules and kexec: init_module, finit_module, delete_module, kexec_load, kexec_file_load.
- file handles: open_by_handle_at opens any inode of a filesystem by handle, past the container's root
  (the "shocker" escape); name_to_handle_at produces those handles.
- host-wide switches: reboot, swapon, swapoff, acct, quotactl (and quotactl_fd), syslog (the host
  kernel's ring buffer), lookup_dcookie, nfsservctl, uselib, and obsolete module calls.
- clocks: settimeofday, clock_settime, clock_adjtime, adjtimex, stime: the clock is not namespaced.
- raw port I/O: iopl, ioperm (x86 only; the names simply do not exist on other architectures).
- personality is left alone; vm86/vm86old are denied (32-bit x86 only).

Deliberately allowed:
- ptrace, process_vm_readv/writev, pidfd_getfd, kcmp: the container's pid namespace holds only its own
  processes, so these reach nothing else; since Linux 4.8 seccomp is re-checked after a tracer changes a
  syscall, so ptrace cannot smuggle a denied call past this filter. Debuggers (py-spy, gdb) keep working.
- chroot (Docker allows it with CAP_SYS_CHROOT; some build tools use it inside their own root),
  sethostname/setdomainname (the container has its own UTS namespace).

Capabilities are dropped separately (oci_config.CAPABILITIES): most of these calls already need
CAP_SYS_ADMIN & co, and the filter is the second wall should a capability be present (as in builds).
"""

from __future__ import annotations

import platform
from typing import Any

EPERM = 1
ENOSYS = 38

# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET.
# (CLONE_NEWTIME, 0x80, only exists for unshare/clone3: in clone's flags that byte is the exit signal.)
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)

DENIED = [
    # mounts and the root
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    # namespaces
    "unshare",
    "setns",
    # keyring
    "keyctl",
    "add_key",
    "request_key",
    # kernel attack surface
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # modules and kexec
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    # file handles
    "open_by_handle_at",
    "name_to_handle_at",
    # host-wide switches
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "lookup_dcookie",
    "nfsservctl",
    "uselib",
    "_sysctl",
    # clocks
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
    # raw I/O, 32-bit x86 oddities
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
]

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def architectures(machine: str | None = None) -> list[str]:
    """The native ABI and its compat ABIs, so a 32-bit syscall entry gets the same filter. Syscalls
    from any other architecture are killed by the runtime's filter (libseccomp's bad-arch action)."""
    return _ARCHES.get(machine or platform.machine(), [])


def profile(machine: str | None = None, gvisor: bool = False) -> dict[str, Any]:
    """The OCI `linux.seccomp` object (runtime-spec 1.0.2, as crun and runc read it).

    gvisor: for runsc --oci-seccomp, which applies the filter inside the sandbox's own kernel. gVisor
    (2022) has no clone3, so glibc already falls back to clone there; with a clone3 rule as well, its
    filter answered EPERM instead of ENOSYS and thread creation failed. The rule is left out."""
    syscalls: list[dict[str, Any]] = [{"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    for flag in CLONE_NAMESPACE_FLAGS:
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    if not gvisor:
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": architectures(machine), "syscalls": syscalls}
