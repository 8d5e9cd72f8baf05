"""Every custom error our contracts can revert with has a stable code and a status (issue 10, item 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.chain.compiler import artifacts_dir
from app.domain.contract_errors import (
    CONTRACT_ERRORS,
    INPUT,
    STATE,
    describe,
    markdown_table,
    snake_case,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _artifact_errors() -> dict[str, set[str]]:
    """Custom error names by artifact, from every build artifact (what the chain client decodes)."""
    found: dict[str, set[str]] = {}
    for path in sorted(artifacts_dir().glob("*.json")):
        abi = json.loads(path.read_text()).get("abi") or []
        found[path.stem] = {item["name"] for item in abi if item["type"] == "error"}
    return found


def test_every_custom_error_in_the_build_artifacts_has_a_code_and_a_status() -> None:
    by_artifact = _artifact_errors()
    # the escrow's own interface is among them, so an empty glob cannot pass this test
    assert {"SignatureExpired", "InvalidStatus", "NotOracle"} <= by_artifact["ITradeGuardEscrow"]
    missing = {
        artifact: sorted(names - CONTRACT_ERRORS.keys())
        for artifact, names in by_artifact.items()
        if names - CONTRACT_ERRORS.keys()
    }
    assert missing == {}, f"add these errors to app/domain/contract_errors.py: {missing}"


def test_codes_are_the_names_in_snake_case_unique_and_statuses_follow_one_rule() -> None:
    custom = {name: row for name, row in CONTRACT_ERRORS.items() if name not in ("Error", "Panic")}
    for name, row in custom.items():
        assert row.name == name and row.code == snake_case(name), row
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", row.code), row
        assert row.meaning and "|" not in row.meaning, row
    assert all(row.status in (STATE, INPUT) for row in CONTRACT_ERRORS.values())
    codes = [row.code for row in CONTRACT_ERRORS.values()]
    assert len(codes) == len(set(codes)) and "contract_revert" not in codes
    # a sample of the rule: the order's state and what already happened are 409, the request's content 422
    assert {
        n: CONTRACT_ERRORS[n].status for n in ("InvalidStatus", "DeadlinePassed", "SignatureReplayed")
    } == {
        "InvalidStatus": 409,
        "DeadlinePassed": 409,
        "SignatureReplayed": 409,
    }
    assert {
        n: CONTRACT_ERRORS[n].status for n in ("SignatureExpired", "InvalidAmount", "InvalidSignature")
    } == {
        "SignatureExpired": 422,
        "InvalidAmount": 422,
        "InvalidSignature": 422,
    }


@pytest.mark.parametrize(
    "name, code",
    [
        ("SignatureExpired", "signature_expired"),
        ("InvalidStatus", "invalid_status"),
        ("ERC20InsufficientAllowance", "erc20_insufficient_allowance"),
        ("ERC2612ExpiredSignature", "erc2612_expired_signature"),
        ("ECDSAInvalidSignatureS", "ecdsa_invalid_signature_s"),
        ("NotADevChain", "not_a_dev_chain"),
        ("NoAttestations", "no_attestations"),
    ],
)
def test_snake_case(name: str, code: str) -> None:
    assert snake_case(name) == code


def test_an_error_of_a_contract_we_do_not_build_is_still_named() -> None:
    row = describe("SomeoneElsesError")
    assert (row.name, row.code, row.status) == ("SomeoneElsesError", "contract_revert", 422)
    assert describe("Error").code == "revert_reason" and describe("Panic").code == "contract_panic"


def test_the_readme_lists_every_code() -> None:
    assert markdown_table() in README.read_text(), "regenerate the README's table: markdown_table()"
