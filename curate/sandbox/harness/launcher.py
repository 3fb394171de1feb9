# The launcher: `python -I -B launcher.py RESULT_FD` as root inside the sandbox's namespaces, from its own
# root-only directory; seccomp.py is prepended. It reads launch.json and the report's nonce (on
# stdin), installs the seccomp filter, starts the candidate's server and the judge under their
# own uids with resource limits, connected by two pipes, and writes on RESULT_FD how the
# candidate's process ended, for a judge that saw it go.
import json
import os
import subprocess
import sys


def _confined(launch, uid, argv):
    limits = launch["limits"]
    return [launch["setsid"], launch["prlimit"],
            "--cpu=%d:%d" % (limits["cpu_seconds"], limits["cpu_seconds"] + 1),
            "--as=%d" % limits["memory_bytes"], "--nproc=%d" % limits["max_processes"],
            "--fsize=%d" % limits["max_file_bytes"], "--nofile=%d" % limits["max_open_files"],
            "--core=0", "--memlock=0", "--",
            launch["setpriv"], "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=SIGKILL", "--",
            launch["python"], "-I", "-B", *argv]


def _main():
    with open("launch.json", encoding="utf-8") as f:
        launch = json.load(f)
    result_fd = int(sys.argv[1])
    nonce = sys.stdin.readline().strip()
    install_seccomp()
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    candidate = subprocess.Popen(
        _confined(launch, launch["candidate_uid"], ["server.py", str(requests_r), str(replies_w)]),
        stdin=subprocess.DEVNULL, pass_fds=(requests_r, replies_w), cwd="/tmp/box",
        env={**env, "HOME": "/tmp/box"})
    judge = subprocess.Popen(
        _confined(launch, launch["judge_uid"], ["judge.py", str(result_fd), str(requests_w), str(replies_r)]),
        stdin=subprocess.PIPE, pass_fds=(result_fd, requests_w, replies_r), cwd="/tmp/judge",
        env={**env, "HOME": "/tmp/judge"})
    for fd in (requests_r, requests_w, replies_r, replies_w):
        os.close(fd)
    try:
        judge.stdin.write((nonce + "\n").encode())
        judge.stdin.close()
    except OSError:
        pass
    code = judge.wait()
    try:  # a judge that saw the candidate go may be a moment ahead of its exit
        ended = candidate.wait(timeout=1)
    except subprocess.TimeoutExpired:
        candidate.kill()
        candidate.wait()
    else:
        os.write(result_fd, ("\n%s candidate-ended %d\n" % (nonce, ended)).encode())
    return code


sys.exit(_main())
