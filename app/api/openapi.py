"""The problem answers each route documents in the OpenAPI: every 4xx (and 503) it can give, with examples.

Routes pass ``responses=problems(...)``. A response marked ``x-schema-valid-input: true`` is one that a
request whose parameters and body match the published schema can still get: a business rule, a signature by
the wrong key, an EIP-55 checksum that a pattern cannot express, an order in the wrong state. Unmarked 4xx
answer only malformed input. Clients can rely on the mark, and ``scripts/fuzz_api.py`` holds the service to
it: its schemathesis run accepts a rejected schema-valid request only with a status its operation marks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.api.problems import PROBLEM, TYPE_BASE, problem_title
from app.api.schemas import Problem

#: The OpenAPI extension naming responses that schema-valid input can get.
VALID_INPUT = "x-schema-valid-input"

#: An example problem: (code, detail), optionally with the fields the problem adds.
Example = tuple[str, str] | tuple[str, str, dict[str, Any]]

_MEANING = {
    400: "the body cannot be parsed (malformed JSON or multipart, or nested too deep)",
    401: "missing, unknown or revoked API key",
    403: "the caller's role may not do this",
    404: "not found, or not visible to the caller",
    409: "conflicts with the current state (the order's status, an Idempotency-Key still in flight)",
    413: "the body is larger than the limit",
    422: "the request does not match the schema",
    503: "the chain node or the database is not available; retry later",
}

_DEFAULT_EXAMPLES: dict[int, Example] = {
    400: ("malformed", "body is not JSON: unbalanced brackets"),
    401: ("unauthorized", "unknown or revoked API key"),
    403: ("forbidden", "a merchant may not do this"),
    404: ("not_found", "order 0x5e1f… not found"),
    409: ("idempotency_key_in_flight", "'order-42' is still being processed"),
    413: ("too_large", "the request body is larger than 2097152 bytes"),
    422: (
        "validation_error",
        "the request does not match the schema",
        {"errors": [{"field": "amount", "message": "String should match pattern '^[1-9][0-9]{0,38}$'"}]},
    ),
    503: ("database_unavailable", "the database is not available; retry later"),
}

_SCHEMA = Problem.model_json_schema()

#: Rules every route taking an address in its body can break although the pattern matches.
CHECKSUM: Example = (
    "validation_error",
    "the request does not match the schema",
    {
        "errors": [
            {"field": "buyer", "message": "Value error, mixed-case address with an invalid EIP-55 checksum"}
        ]
    },
)
#: A cursor of the right shape that this API did not hand out.
BAD_CURSOR: Example = ("invalid_cursor", "cursor is not one this API returned")


def _value(status: int, example: Example) -> dict[str, Any]:
    code, detail = example[0], example[1]
    extra = example[2] if len(example) == 3 else {}
    return {
        "type": TYPE_BASE + code,
        "title": problem_title(status),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problems(*statuses: int, valid: Mapping[int, Sequence[Example]] | None = None) -> dict[int | str, Any]:
    """``responses=`` for a route: each of ``statuses`` (and of ``valid``) as a problem+json answer with its
    meaning and examples; the statuses in ``valid`` are marked reachable by schema-valid input, with the
    examples given there."""
    valid = valid or {}
    out: dict[int | str, Any] = {}
    for status in sorted({*statuses, *valid}):
        examples: dict[str, Any] = {}
        default = [_DEFAULT_EXAMPLES[status]] if status in _DEFAULT_EXAMPLES else []
        for example in [*default, *valid.get(status, ())]:
            name = example[0] if example[0] not in examples else f"{example[0]}_{len(examples)}"
            examples[name] = {"value": _value(status, example)}
        response: dict[str, Any] = {
            "description": _MEANING.get(status, problem_title(status)),
            "content": {PROBLEM: {"schema": _SCHEMA, "examples": examples}},
        }
        if status in valid:
            response[VALID_INPUT] = True
            response["description"] += "; also for schema-valid input: " + ", ".join(
                sorted({e[0] for e in valid[status]})
            )
        out[status] = response
    return out


#: What every authenticated route can answer whatever its input.
AUTH = (401, 503)
#: What a write (POST, PUT) can answer whatever its input: a malformed or too large body, an invalid one, and
#: its Idempotency-Key still in flight.
BODY = (400, 409, 413, 422)

# --- examples of rules that schema-valid input can break, shared by several routes ------------------------

BAD_SIGNATURE: Example = (
    "invalid_signature",
    "signed by 0x90F79bf6EB2c4f870365E785982E1f101E93b906, expected 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A"
    "65",
    {
        "expected": "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "recovered": "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    },
)
WRONG_STATE: Example = ("invalid_state", "order 0x5e1f… is released, not awaiting_funding")
#: A contract revert: the code is its custom error's (app/domain/contract_errors.py); a state refusal: 409 ...
REVERT: Example = (
    "invalid_status",
    "the escrow refused: InvalidStatus(orderId=0x5e1f…, status=1): the order's status does not allow this "
    "action",
    {"error": "InvalidStatus", "arguments": {"orderId": "0x5e1f…", "status": 1}},
)
#: ... and refusals of the request's own content are 422.
REVERT_INPUT: Example = (
    "signature_expired",
    "the escrow refused: SignatureExpired(validUntil=1767225600, nowTime=1767229200): the signed message's "
    "validUntil is before the chain's time",
    {"error": "SignatureExpired", "arguments": {"validUntil": 1767225600, "nowTime": 1767229200}},
)


def links(status: int, **targets: tuple[str, str, dict[str, str]]) -> dict[str, Any]:
    """``openapi_extra`` for OpenAPI links from this operation's ``status`` answer to the operations that use
    what it returns: ``name=(path, method, {parameter: runtime expression})``. Clients and schemathesis'
    stateful phase follow them (e.g. create an order, then read, ship and upload evidence for it)."""
    return {
        "responses": {
            str(status): {
                "links": {
                    name: {
                        "operationRef": "#/paths/"
                        + path.replace("~", "~0").replace("/", "~1")
                        + "/"
                        + method,
                        "parameters": parameters,
                    }
                    for name, (path, method, parameters) in targets.items()
                }
            }
        }
    }
