"""docs/resource-graph-small-city.md is generated from the program, so it must match a fresh run."""

from __future__ import annotations

from infra.graph import document
from infra.program import ROOT

from .infra_stacks import deployed


def test_the_small_city_resource_graph_in_docs_is_current():
    checked_in = (ROOT / "docs" / "resource-graph-small-city.md").read_text(encoding="utf-8")
    assert checked_in == document("small-city-prod", deployed("small-city-prod")), (
        "regenerate it: .venv/bin/python -m infra.graph")
