"""The study kernel's seccomp filter: the system calls a sealed kernel never needs are refused.

SECURITY BOUNDARY. bubblewrap loads this filter (``bwrap --seccomp FD``) after it has built the
sandbox and before it runs setpriv and the kernel, so everything the kernel runs, ``!`` commands
and ``ctypes`` included, is bound by it, and nothing inside can remove it (filters only stack, and
no-new-privs is set). Namespaces, uids and mounts already keep the kernel in; this removes the
kernel interfaces an escape would go through instead: new user or mount namespaces, ptrace and
cross-process memory access, BPF, perf, io_uring, userfaultfd, the key ring, module loading,
host-wide settings, and every socket family but Unix, IPv4/IPv6 and netlink. Refused calls fail
with EPERM (clone3 with ENOSYS, so the C library falls back to clone, whose namespace flags are
checked); any other architecture's system calls (the 32-bit ABI) kill the process. Built with
libseccomp through pyseccomp. Guarded by
tests/sandbox/test_escape.py (from inside a real kernel) and tests/sandbox/test_seccomp.py.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os

# Never needed by a Python kernel, its scientific libraries, or setpriv (which runs under it).
DENIED = (
    # namespaces and mounts: the sandbox's own are made before the filter is loaded
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # other processes' memory and state
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # kernel interfaces with a history of privilege escalations
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "lookup_dcookie", "fanotify_init",
    "open_by_handle_at", "name_to_handle_at",
    # the host itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "sethostname", "setdomainname",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "vhangup",
    "uselib",
)
# Socket families a kernel may open: Unix (the gateway, ZMQ), IPv4/IPv6 (its own lo) and netlink
# (reading its interfaces). The others (AF_PACKET, AF_ALG, AF_RDS, AF_TIPC, AF_VSOCK, ...) are
# kernel code a kernel never needs and a source of escalations (<linux/socket.h>).
SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
# clone() flags that would make a new namespace (<linux/sched.h>)
NAMESPACE_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x2000000,
                   "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
                   "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
                   "CLONE_NEWNET": 0x40000000}


def build():
    """The filter: allow by default; refuse ``DENIED``, namespace-making clones and sockets of
    any family not in ``SOCKET_FAMILIES``."""
    import pyseccomp as sc

    refuse = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        rules.add_rule(refuse, name)
    # clone3 passes its flags in memory a filter cannot read: make it look absent
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS.values():  # x86_64 and arm64: the flags are clone's first argument
        rules.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    allowed = set(SOCKET_FAMILIES.values())
    for call in ("socket", "socketpair"):  # the family is the first argument of both
        rules.add_rule(refuse, call, sc.Arg(0, sc.GT, max(allowed)))
        for family in range(1, max(allowed)):
            if family not in allowed:
                rules.add_rule(refuse, call, sc.Arg(0, sc.EQ, family))
    return rules


@functools.cache
def program() -> bytes:
    """The compiled BPF program bwrap loads (the same for every kernel of this installation; its
    SHA-256 goes into the kernel's start record)."""
    fd = os.memfd_create("workbench-kernel-seccomp", os.MFD_CLOEXEC)
    try:
        build().export_bpf(_FileNo(fd))
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def sha256() -> str:
    return hashlib.sha256(program()).hexdigest()


def program_fd() -> int:
    """A memory file holding ``program()``, read from its start by ``bwrap --seccomp``. The caller
    passes it to bwrap (``pass_fds``) and closes it once bwrap has started."""
    from workbench.sandbox.launch import memory_file

    return memory_file("workbench-kernel-seccomp", program())


class _FileNo:
    """pyseccomp's export_bpf wants an object with fileno()."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
