"""Every analyst view's plan joins only on row identities, so its cost is linear in the rows it reads.

DuckLake gives DuckDB's planner no statistics; a join whose only condition is a low-cardinality
column (scores to scores on `scorer`) pairs unrelated rows and grows with the square of the table
(10,000 pairs took minutes). The checker below is also run on that former definition, to show it
catches the plan.
"""

from __future__ import annotations

import json

import pytest

from bench.synthetic_lake import fill
from curate.lake.agreement import verifier_scores_sql
from curate.lake.catalog import Lake
from curate.lake.views import views

ID_COLUMNS = {"pair_id", "candidate_id", "prompt_id", "chosen_id", "rejected_id", "audit_id", "score_id"}
LINEAR_JOINS = {"HASH_JOIN", "DELIM_JOIN", "LEFT_DELIM_JOIN", "RIGHT_DELIM_JOIN"}
# A hash join that only filters its left side (IN, NOT IN, EXISTS) never yields more rows than it reads.
FILTER_JOIN_TYPES = {"SEMI", "ANTI", "MARK"}
GROUP_BYS = {"HASH_GROUP_BY", "PERFECT_HASH_GROUP_BY"}

# The pair_verdicts view as it was before issue 15 (its plan joined scores to scores on scorer).
FORMER_PAIR_VERDICTS = f"""
    SELECT pair_id, bool_and(c.score > r.score) AS verifier_agrees FROM pairs p
    JOIN ({verifier_scores_sql()}) c ON c.candidate_id = p.chosen_id
    JOIN ({verifier_scores_sql()}) r ON r.candidate_id = p.rejected_id AND r.scorer = c.scorer
    GROUP BY pair_id"""


def _joins(node):
    if "JOIN" in node["name"] or "CROSS" in node["name"]:
        yield node
    for child in node.get("children", []):
        yield from _joins(child)


def _one_row_per_key(join) -> bool:
    """Both inputs grouped by one column, joined on one equality (of those columns): each side has
    a row per key, so the join yields at most one row per key."""
    conditions = join.get("extra_info", {}).get("Conditions", "")
    children = join.get("children", [])
    def grouped_once(node):
        groups = node.get("extra_info", {}).get("Groups", "")
        return node["name"] in GROUP_BYS and (len(groups) == 1 if isinstance(groups, list) else "\n" not in groups)
    return (isinstance(conditions, str) and "\n" not in conditions and " = " in conditions
            and len(children) == 2 and all(grouped_once(child) for child in children))


def unkeyed_joins(lake: Lake, sql: str) -> list[str]:
    """The joins in `sql`'s plan that are not an equality on a row identity (an id column), other
    than hash joins that only filter and joins of two inputs grouped by the join key."""
    plan = json.loads(lake.con.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()[0][1])
    bad = []
    for root in plan:
        for join in _joins(root):
            conditions = join.get("extra_info", {}).get("Conditions", "")
            conditions = conditions if isinstance(conditions, list) else conditions.splitlines()
            if join["name"] in LINEAR_JOINS and join.get("extra_info", {}).get("Join Type") in FILTER_JOIN_TYPES:
                continue
            if join["name"] in LINEAR_JOINS and _one_row_per_key(join):
                continue
            keyed = any(all(side.strip() in ID_COLUMNS for side in c.split(" = ")) for c in conditions if " = " in c)
            if join["name"] not in LINEAR_JOINS or not keyed:
                bad.append(f"{join['name']} on {conditions}")
    return bad


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with Lake(tmp_path_factory.mktemp("plans") / "lake") as lake:
        fill(lake, 4000)
        yield lake


def test_checker_catches_the_former_quadratic_plan(lake):
    assert any("scorer" in join for join in unkeyed_joins(lake, FORMER_PAIR_VERDICTS))


def test_checker_takes_a_join_of_groups_only_when_both_sides_are_grouped_by_the_key(lake):
    def grouped(table):
        return f"(SELECT strategy, count(*) AS n FROM {table} GROUP BY strategy)"
    assert unkeyed_joins(lake, f"SELECT * FROM {grouped('pair_facts')} a JOIN {grouped('pair_audit_facts')} b "
                               "USING (strategy)") == []
    assert unkeyed_joins(lake, f"SELECT * FROM {grouped('pair_facts')} a JOIN pair_audit_facts b USING (strategy)") != []


@pytest.mark.parametrize("name", sorted(views()))
def test_view_plans_join_only_on_ids(lake, name):
    assert unkeyed_joins(lake, f"SELECT * FROM {name}") == []
    assert unkeyed_joins(lake, f"SELECT count(*) FROM {name}") == []


def test_pair_verdicts_on_the_synthetic_lake(lake):
    # chosen samples score 1 and rejected 0 on math_verify; quality rows are no verifier
    got = lake.query("SELECT count(*) AS n, bool_and(verifier_agrees) AS agree, max(verifiers) AS most "
                     "FROM pair_verdicts").row(0, named=True)
    assert got == {"n": 4000, "agree": True, "most": 1}
