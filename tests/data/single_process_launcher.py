# Control only (tests/test_sandbox_faking.py): the sandbox's layout before the judge was split off.
# It stands in for harness/launcher.py and runs the old harness (single_process_harness.py) the
# old way: in the candidate's directory, as the candidate's uid, the tests beside the candidate.
import json
import os
import shutil
import subprocess
import sys


def _main():
    with open("launch.json", encoding="utf-8") as f:
        launch = json.load(f)
    result_fd, uid, limits = int(sys.argv[1]), launch["candidate_uid"], launch["limits"]
    nonce = sys.stdin.readline()
    for source, target in (("/tmp/judge/tests.py", "tests.py"), ("/tmp/judge/spec.json", "spec.json"),
                           ("single_process_harness.py", "harness.py")):
        shutil.copy(source, "/tmp/box/" + target)
        os.chown("/tmp/box/" + target, uid, uid)
    argv = [launch["setsid"], launch["prlimit"],
            "--cpu=%d:%d" % (limits["cpu_seconds"], limits["cpu_seconds"] + 1),
            "--as=%d" % limits["memory_bytes"], "--nproc=%d" % limits["max_processes"],
            "--fsize=%d" % limits["max_file_bytes"], "--nofile=%d" % limits["max_open_files"],
            "--core=0", "--memlock=0", "--",
            launch["setpriv"], "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig=SIGKILL", "--",
            launch["python"], "-I", "-B", "harness.py", str(result_fd)]
    harness = subprocess.Popen(argv, stdin=subprocess.PIPE, pass_fds=(result_fd,), cwd="/tmp/box",
                               env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp/box"})
    harness.stdin.write(nonce.encode())
    harness.stdin.close()
    return harness.wait()


sys.exit(_main())
