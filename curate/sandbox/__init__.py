"""The sandbox that runs model-written code (isolation.py) and the programs it runs inside
(harness/): the code_tests scorer and the audit's verifier re-run call it; nothing runs such code
anywhere else."""
