"""Extensions as a team would write them, one module each, named by a run config's `plugins`
(tests/test_extension_points.py, tests/test_ray_runner.py, tests/test_process_runner.py)."""
