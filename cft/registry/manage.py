"""Model versions and aliases: registration, the automatic gate, manual promote and rollback.

Every alias change happens under `registry_lock` (cft.registry.locking), so concurrent
registers and manual promotions never interleave their read-decide-write.

Aliases: `challenger` = the latest registered version; `champion` = the version served.
Tags on a model version:
    gate.score                        the version's score on the gate's metric, when evaluation succeeded
    gate.metric                       that metric's name (register.metric, e.g. "average")
    eval.status                       "ok", or "missing: ..." / "failed: ..."
    promotion.decision                promoted | rejected | already champion | promoted by hand | restored by rollback
    promotion.reason                  why, in words
    promotion.champion_before         the champion when the decision was made ("none" if none)
    promotion.champion_score_before   its score on the gate's metric ("none" if unknown)
    promotion.previous_champion       set when the version becomes champion: the one it replaced
    promotion.rolled_back             "true" once rolled back; the gate never re-promotes it (a person can)
    lineage.*                         see cft.registry.lineage
Tag on the registered model:
    champion.history                  JSON list of champion versions, oldest first; rollback pops it
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from cft.registry.locking import registry_lock
from cft.registry.promotion import Decision, decide

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_TAG = "gate.score"
METRIC_TAG = "gate.metric"
EVAL_STATUS_TAG = "eval.status"
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"
CHAMPION_BEFORE_TAG = "promotion.champion_before"
CHAMPION_SCORE_BEFORE_TAG = "promotion.champion_score_before"
PREVIOUS_CHAMPION_TAG = "promotion.previous_champion"
ROLLED_BACK_TAG = "promotion.rolled_back"
HISTORY_TAG = "champion.history"
HISTORY_LIMIT = 200  # entries kept; rollback further back than that is by hand


@dataclass(frozen=True)
class GateResult:
    version: str
    promoted: bool  # promoted by this decision
    is_champion: bool  # champion after it (promoted now or already)
    decision: str
    reason: str
    champion_before: str | None
    champion_score_before: float | None


def _not_found(exc) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def version_by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def _version_of(model_version) -> str | None:
    # The SQL store gives ints, the REST client strings: compare as strings.
    return str(model_version.version) if model_version is not None else None


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None  # edited by hand into something else: treated as unevaluated


def score(version) -> float | None:
    """The score the gate recorded on a version (on whatever metric it used then)."""
    return _number(version.tags.get(SCORE_TAG)) if version is not None else None


def score_on(client, version, metric: str) -> float | None:
    """A version's score on `metric`: its gate tag when measured on that metric, else the
    `eval.<metric>` its run logged (register logs every evaluation number), so changing
    `register.metric` compares like with like instead of scores of different metrics."""
    if version is None:
        return None
    if version.tags.get(METRIC_TAG, "average") == metric and score(version) is not None:
        return score(version)
    from mlflow.exceptions import MlflowException

    if not getattr(version, "run_id", None):
        return None
    try:
        run = client.get_run(version.run_id)
    except MlflowException:  # the run was deleted: no score, rather than a gate that always fails
        return None
    return _number(run.data.metrics.get(f"eval.{metric}"))


def _require_version(client, name: str, version: str | None = None):
    """ValueError (one clear CLI line) instead of an MLflow traceback for a wrong name or version."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version) if version else client.get_registered_model(name)
    except MlflowException as exc:
        if _not_found(exc):
            raise ValueError(f"{name}: no such registered model" + (f" version {version}" if version else "")) from None
        raise


def find_version_for_run(client, name: str, run_id: str):
    """The version registered from training run `run_id`, if any (lowest number if several)."""
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(client, name: str, model_uri: str, run_id: str, *, model_id: str | None = None, tags: dict | None = None):
    """One version per training run: returns the existing one, else creates it. Under the lock,
    so two registers of the same run cannot both create one."""
    from mlflow.exceptions import MlflowException

    with registry_lock(client, name):
        existing = find_version_for_run(client, name, run_id)
        if existing is not None:
            return existing
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        return client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)


def _history(client, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    try:
        return [str(v) for v in json.loads(raw)] if raw else []
    except ValueError:
        return []


def _set_history(client, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:]))


def _make_champion(client, name: str, version: str, previous) -> None:
    """Move the alias and push the version on the history (lock held by the caller)."""
    history = _history(client, name)
    if previous is not None and (not history or history[-1] != _version_of(previous)):
        history.append(_version_of(previous))  # a champion set before history was kept
    client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, _version_of(previous) or "none")
    client.set_registered_model_alias(name, CHAMPION, version)
    _set_history(client, name, [*history, str(version)])


def _clear_rolled_back(client, name: str, version: str) -> None:
    """A person chose this version: the gate's "never re-promote" mark no longer applies."""
    if client.get_model_version(name, version).tags.get(ROLLED_BACK_TAG):
        client.delete_model_version_tag(name, version, ROLLED_BACK_TAG)


def _tag_decision(client, name: str, version: str, decision: str, reason: str, champion_before,
                  before_score: float | None) -> None:
    for key, value in {
        DECISION_TAG: decision,
        REASON_TAG: reason,
        CHAMPION_BEFORE_TAG: _version_of(champion_before) or "none",
        CHAMPION_SCORE_BEFORE_TAG: str(before_score) if before_score is not None else "none",
        "promotion.decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }.items():
        client.set_model_version_tag(name, version, key, value)


def apply_promotion_gate(client, name: str, version: str, value: float | None, margin: float, eval_status: str = "ok", *,
                         metric: str = "average", higher_is_better: bool = True) -> GateResult:
    """Make `version` the challenger; make it champion when `decide` says so (its `value` on
    `metric` against the champion's). Read, decide and write happen under the registry lock,
    and the champion is re-read just before the alias moves (compare-and-set): if it changed
    meanwhile (someone outside cft), decide again."""
    version = str(version)
    with registry_lock(client, name):
        client.set_registered_model_alias(name, CHALLENGER, version)
        mv = client.get_model_version(name, version)
        for _ in range(5):
            champion = version_by_alias(client, name, CHAMPION)
            champion_score = score_on(client, champion, metric)
            if champion is not None and str(champion.version) == version:
                return GateResult(version, False, True, "already champion", "already champion", version, champion_score)
            if mv.tags.get(ROLLED_BACK_TAG) == "true":
                decision = Decision(False, "rolled back by hand earlier: only a manual promote brings it back")
            elif value is None:
                decision = Decision(False, f"evaluation {eval_status}: never promoted")
            else:
                decision = decide(value, champion_score, margin, higher_is_better=higher_is_better, metric=metric)
            latest = version_by_alias(client, name, CHAMPION)
            if _version_of(latest) != _version_of(champion):
                continue  # the champion moved between read and write: decide again
            if decision.promote:
                _make_champion(client, name, version, champion)
            label = "promoted" if decision.promote else "rejected"
            _tag_decision(client, name, version, label, decision.reason, champion, champion_score)
            return GateResult(version, decision.promote, decision.promote, label, decision.reason, _version_of(champion),
                              champion_score)
        raise RuntimeError(f"{name}: the champion kept changing while deciding on version {version}")


def promote(client, name: str, version: str | int, reason: str) -> str | None:
    """Make `version` champion by hand; returns the champion it replaced (None if none; the
    version itself if it already was). The replaced one goes on the history, so `rollback`
    brings it back. ValueError for an unknown model or version."""
    version = str(version)
    with registry_lock(client, name):
        _require_version(client, name, version)
        previous = version_by_alias(client, name, CHAMPION)
        if previous is not None and str(previous.version) == version:
            return version
        _make_champion(client, name, version, previous)
        _clear_rolled_back(client, name, version)
        _tag_decision(client, name, version, "promoted by hand", reason, previous, score(previous))
        return _version_of(previous)


def rollback(client, name: str, reason: str = "rollback") -> str:
    """Restore the champion before the current one; returns the version now champion.
    The demoted version is tagged `promotion.rolled_back` so the gate won't re-promote it."""
    from mlflow.exceptions import MlflowException

    with registry_lock(client, name):
        _require_version(client, name)
        current = version_by_alias(client, name, CHAMPION)
        current_version = _version_of(current)
        history = _history(client, name)
        while history and history[-1] == current_version:
            history.pop()
        while history:
            candidate = history[-1]
            try:
                client.get_model_version(name, candidate)
                break
            except MlflowException:
                history.pop()  # deleted since: go further back
        if not history:
            raise ValueError(f"{name}: no previous champion to roll back to (champion: {current_version})")
        target = history[-1]
        if current is not None:
            client.set_model_version_tag(name, current_version, ROLLED_BACK_TAG, "true")
        client.set_registered_model_alias(name, CHAMPION, target)
        _clear_rolled_back(client, name, target)
        _set_history(client, name, history)
        _tag_decision(client, name, target, "restored by rollback", f"{reason}: replaces version {current_version}", current,
                      score(current))
        return target
