"""A seccomp filter for everything the sandbox runs: no new namespaces (so no mount or chroot
either, which need one for an unprivileged user), no mounts, no io_uring, bpf, perf events,
userfaultfd or kernel keyrings. Other architectures' system calls (i386 through int 0x80, x32)
are refused as well, since the numbers below are x86_64's and aarch64's only."""

import ctypes
import errno
import platform

# architecture: (AUDIT_ARCH, {name: number}), from the kernel's syscall tables
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "add_key": 248, "request_key": 249, "keyctl": 250, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {
        "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "add_key": 217, "request_key": 218, "keyctl": 219, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "clone": 220, "clone3": 435}),
}
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000
_ALLOW, _KILL = 0x7FFF0000, 0x80000000


def _errno(code):
    return 0x00050000 | code


def seccomp_program(machine=None):
    """The filter as (code, jt, jf, k) instructions; None on an architecture it does not know."""
    known = _SYSCALLS.get(machine or platform.machine())
    if known is None:
        return None
    arch, numbers = known
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    program = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, _KILL), (ld, 0, 0, 0)]
    if arch == _SYSCALLS["x86_64"][0]:
        program += [(jge, 0, 1, _X32_BIT), (ret, 0, 0, _errno(errno.ENOSYS))]
    for name, number in numbers.items():
        if name not in ("clone", "clone3"):
            program += [(jeq, 0, 1, number), (ret, 0, 0, _errno(errno.EPERM))]
    # clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes the C library fall
    # back to clone, whose flags (argument 0, the low word at offset 16) are checked
    program += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, _errno(errno.ENOSYS)),
                (jeq, 0, 3, numbers["clone"]), (ld, 0, 0, 16), (jset, 0, 1, _NAMESPACE_FLAGS),
                (ret, 0, 0, _errno(errno.EPERM)), (ret, 0, 0, _ALLOW)]
    return program


def install_seccomp():
    """Install the filter on this process (and so on every process it starts); False where this
    architecture has no filter. Needs no_new_privs or root."""
    program = seccomp_program()
    if program is None:
        return False

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    instructions = (Instruction * len(program))(*[Instruction(*i) for i in program])
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    filter_program = Program(len(program), instructions)
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(filter_program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    return True
