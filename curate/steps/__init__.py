"""The steps of a run (ingest, generate, score, derive, pairs, audit, export), one module each.

Every step is a function `step(context, state)`: it reads what it needs from the lake, runs its
stage, commits, and records its counts on the RunState. curate/pipeline.py declares their order
(`run_steps`) for plain runs and for the Prefect flow alike, and times each (`Pipeline.run_step`).
"""
