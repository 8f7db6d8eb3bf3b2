"""The only module that imports Great Expectations (1.x API), and only when called.

`run_suite` validates a frame of columns against `ExpectationSpec`s with
result_format COMPLETE, maps every failing row index back to the spec's check
name, and optionally renders Data Docs into a local folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cft.validate.suite import ExpectationSpec

SITE_NAME = "cft_local_site"
_DOCS_LIST_LIMIT = 20  # unexpected values kept per expectation in the rendered docs
_DOCS_VALUE_CHARS = 200  # and at most this much of each (a critique can be megabytes)


@dataclass
class SuiteOutcome:
    """Failing row positions per check name, GX's own statistics, and the Data Docs index."""

    failures: dict[str, set[int]]
    statistics: dict[str, Any]
    docs_index: Path | None = None
    expectation_results: list[dict[str, Any]] = field(default_factory=list)


def _quiet() -> None:
    """GX logs and prints progress bars per metric; none of that belongs in stage output."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _build_expectation(spec: ExpectationSpec):
    import great_expectations as gx

    e = gx.expectations
    kind, cols, kw = spec.kind, spec.columns, dict(spec.kwargs)
    if kind == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=cols[0], **kw)
    if kind == "of_type":
        return e.ExpectColumnValuesToBeOfType(column=cols[0], **kw)
    if kind == "in_set":
        return e.ExpectColumnValuesToBeInSet(column=cols[0], **kw)
    if kind == "match_regex":
        return e.ExpectColumnValuesToMatchRegex(column=cols[0], **kw)
    if kind == "length_between":
        return e.ExpectColumnValueLengthsToBeBetween(column=cols[0], **kw)
    if kind == "pair_in_set":
        return e.ExpectColumnPairValuesToBeInSet(column_A=cols[0], column_B=cols[1], **kw)
    if kind == "compound_unique":
        return e.ExpectCompoundColumnsToBeUnique(column_list=list(cols), **kw)
    raise ValueError(f"unknown expectation kind {kind!r} for check {spec.check!r}")


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # A fresh in-memory context per run: its results store then holds only this
    # run, so the rendered index lists this validation and nothing older.
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            SITE_NAME,
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _trim_for_docs(result) -> None:
    """Keep the rendered report small: a few unexpected values, each shortened."""
    res = result.result or {}
    for key in ("unexpected_list", "partial_unexpected_list", "unexpected_index_list", "partial_unexpected_index_list"):
        values = res.get(key)
        if isinstance(values, list):
            res[key] = [_shorten(v) for v in values[:_DOCS_LIST_LIMIT]]
    for key in ("partial_unexpected_counts",):
        values = res.get(key)
        if isinstance(values, list):
            res[key] = [{**c, "value": _shorten(c.get("value"))} for c in values[:_DOCS_LIST_LIMIT]]
    res.pop("unexpected_index_query", None)


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _DOCS_VALUE_CHARS:
        return value[:_DOCS_VALUE_CHARS] + f"... [{len(value)} chars]"
    if isinstance(value, (tuple, list)):
        return type(value)(_shorten(v) for v in value)
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    return value


def run_suite(
    columns: dict[str, Sequence[Any]],
    specs: Sequence[ExpectationSpec],
    *,
    suite_name: str,
    docs_dir: Path | None = None,
) -> SuiteOutcome:
    """Validate the columns with GX; return failing row positions per check name.

    Raises RuntimeError if GX could not evaluate an expectation: a check that did
    not run must never read as a check that passed.
    """
    import great_expectations as gx
    import pandas as pd

    _quiet()
    # object dtype keeps values as they are: pandas 3 would otherwise infer a
    # string dtype and the per-value type checks would see converted values.
    frame = pd.DataFrame({name: pd.Series(list(values), dtype=object) for name, values in columns.items()})
    context = _context(docs_dir)
    batch_definition = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset(f"{suite_name}_rows")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    checks_by_id: dict[str, str] = {}
    for spec in specs:
        expectation = suite.add_expectation(_build_expectation(spec))
        checks_by_id[str(expectation.id)] = spec.check
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_definition, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
    )

    failures: dict[str, set[int]] = {spec.check: set() for spec in specs}
    summaries = []
    for res in result.results:
        check = checks_by_id[str(res.expectation_config.id)]
        info = res.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(
                f"Great Expectations could not evaluate {res.expectation_config.type} for check "
                f"'{check}': {info.get('exception_message')}"
            )
        indices = res.result.get("unexpected_index_list") or []
        if not res.success and not indices:
            raise RuntimeError(f"check '{check}' failed in Great Expectations without naming rows: {res.result}")
        failures[check].update(int(i) for i in indices)
        summaries.append({"check": check, "expectation": res.expectation_config.type, "success": bool(res.success), "unexpected": len(indices)})

    docs_index = None
    if docs_dir is not None:
        store = context.validation_results_store
        for res in result.results:
            _trim_for_docs(res)
        for key in store.list_keys():  # re-store the trimmed result the docs are rendered from
            store.set(key, result)
        urls = context.build_data_docs(site_names=[SITE_NAME])
        docs_index = Path(docs_dir) / "index.html"
        if not docs_index.exists():
            raise RuntimeError(f"Great Expectations did not write Data Docs to {docs_index} ({urls})")
    return SuiteOutcome(failures, dict(result.statistics), docs_index, summaries)
