"""The expectation suites: declared in ``suites.yaml`` (configuration as data), turned into GX objects here.

Keeping the suites as data in the repo means a reviewer reads one YAML file to know what "valid" means for
each zone, and the GX project directory under ``governance/`` only holds results, never the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import great_expectations as gx
import yaml
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

SUITES_FILE = Path(__file__).with_name("suites.yaml")


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    max_failed_fraction: float
    expectations: tuple[dict[str, Any], ...]

    def build(self) -> gx.ExpectationSuite:
        """A fresh GX suite object; the context's ``add_or_update`` keeps ids of unchanged expectations.

        Each configuration is turned into an Expectation first because that raises on a typo in the YAML,
        where the suite constructor would only log it and drop the expectation.
        """
        return gx.ExpectationSuite(name=self.name, expectations=self.expectations_built())

    def expectations_built(self) -> list[Expectation]:
        """The expectations as fresh GX objects, in suite order."""
        return [
            ExpectationConfiguration(type=item["type"], kwargs=dict(item.get("kwargs", {}))).to_domain_obj()
            for item in self.expectations
        ]

    def priority(self, expectation_type: str, column: str | None) -> int:
        """Position of an expectation in the suite: the quarantine reason is the first one a row fails."""
        for index, item in enumerate(self.expectations):
            kwargs = item.get("kwargs", {})
            if item["type"] == expectation_type and kwargs.get("column", kwargs.get("column_A")) == column:
                return index
        return len(self.expectations)


@cache
def load_suites(path: Path = SUITES_FILE) -> dict[str, SuiteConfig]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    suites = {}
    for name, body in data.items():
        suites[name] = SuiteConfig(
            name=name,
            max_failed_fraction=float(body["max_failed_fraction"]),
            expectations=tuple(body["expectations"]),
        )
    return suites
