"""The shared contract owns formats, methods and failure reasons; everything else agrees with it."""

from modelroll import conditions, spec
from modelroll_contract import (
    EXIT_CODE_BY_REASON,
    METHODS,
    MODEL_FORMATS,
    REASON_BY_EXIT_CODE,
    termination_detail,
    termination_message,
)


def test_the_crd_enums_are_the_contracts():
    # the parser's enums come from the CRD's schema (spec_schema.py), the server's from the contract
    assert spec.FORMATS == MODEL_FORMATS
    assert spec.METHODS == METHODS


def test_failure_reasons_are_the_operators_condition_reasons():
    assert set(REASON_BY_EXIT_CODE.values()) >= {
        conditions.INTEGRITY_MISMATCH, conditions.FETCH_FAILED, conditions.MODEL_LOAD_FAILED,
    }  # fmt: skip
    assert all(code not in (0, 1) for code in REASON_BY_EXIT_CODE)  # 1 is any crash, not a reason
    assert {EXIT_CODE_BY_REASON[r]: r for r in EXIT_CODE_BY_REASON} == REASON_BY_EXIT_CODE


def test_termination_detail_strips_only_a_known_reason():
    line = termination_message("FetchFailed", "GET http://x/a: b: 404")
    assert termination_detail(line) == "GET http://x/a: b: 404"
    assert termination_detail("Traceback: something") == "Traceback: something"
