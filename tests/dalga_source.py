"""Dalga v4.0.1's source in the shared folder next to the project (../shared/dalga-v4.0.1, or
DALGA_TEST_SHARED/dalga-v4.0.1): tests and benchmarks use the real thing from there (its client
package, its table's DDL), never a copy in the project. Missing, it skips a test, and under
CI=true fails it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

SHARED = Path(os.environ.get("DALGA_TEST_SHARED", Path(__file__).parents[2] / "shared"))
SOURCE = SHARED / "dalga-v4.0.1"
SERVER_GO_MOD = SOURCE / "server" / "go.mod"  # the require and replace lines of any program
TABLE_GO = SOURCE / "deps" / "dalga" / "internal" / "table" / "table.go"


def missing(message: str) -> NoReturn:
    """Skip the test, or under CI=true fail it."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: required)")
    pytest.skip(message)


def dalga_ddl(table: str) -> list[str]:
    """The statements of Dalga's `-create-tables` for `table`, read from its table.go: the
    instances table first, then the jobs table (Table.Create)."""
    if not TABLE_GO.is_file():
        missing(f"Dalga's source is not at {SOURCE}")
    go = TABLE_GO.read_text()
    statements = []
    for name in ("createInstancesTableSQL", "createTableSQL"):
        block = re.search(rf'const {name} = "" \+\n(.*?)"\n', go, re.S)
        assert block, f"{name} not found in {TABLE_GO}"
        sql = "".join(re.findall(r'"([^"]*)"', block.group(0)))
        statements.append(sql.replace("%s", table))
    return statements
