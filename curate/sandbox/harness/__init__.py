"""The programs that run inside the code sandbox (curate.sandbox.isolation), as plain files.

They run under `python -I` with no access to this package, so each is made self-contained when
the sandbox copies it in: `wire.py` is prepended to the candidate's server and to the judge, and
`seccomp.py` to the launcher. Three processes, three users:

- `launcher.py` (root inside the sandbox's namespaces): installs the seccomp filter, starts the
  other two under their own uids, and reports how the candidate's process ended;
- `candidate_server.py` (the candidate's uid): loads the candidate's code and answers calls;
- `judge.py` (a second uid): runs the tests against proxies of the candidate's functions, counts
  the asserts and reports the verdict on a pipe the candidate never holds.
"""
