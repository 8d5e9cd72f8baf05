"""Content hashes of logistics events (SPEC §4) and the strict JSON reader in front of them.

The stored form of an event is its RFC 8785 canonical JSON; its content hash is the SHA-256 of those bytes, so
anyone (a browser included) can re-hash the stored file and compare it with the hash anchored on chain.

An EPCIS event also gets its GS1 CBV 2.0 event hash (``ni:///sha-256;…?ver=CBV2.0``) as a cross-reference id.
It comes from the reference implementation, ``epcis-event-hash-generator``, which needs care to be used
inside a service: it keeps module-level state (a namespace table that leaks from one document into the next,
the join string), installs a global JSON-LD document loader that falls back to fetching contexts over the
network, puts ``site-packages`` at the front of ``sys.path`` on import, logs through the root logger (whose
first call would configure root logging for the whole process) and fails on some valid documents.
:func:`cbv_event_hash` therefore runs it under a lock, offline, with its logging demoted to one debug logger,
and treats any failure as "no hash".
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.resources
import json
import logging
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import rfc8785

from app.errors import FeedError

log = logging.getLogger(__name__)

# A JSON string, up to its closing quote or the end of the text; it never fails once started, so scanning
# invalid input stays linear.
_STRING = re.compile(r'"[^"\\]*+(?:\\(?:.|\Z)[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a feed body (the richest GS1 example needs 15)."""

_GENERATOR_PACKAGE = "epcis_event_hash_generator"

# The two EPCIS contexts the generator ships with; no other context is ever fetched.
_BUNDLED_CONTEXTS = {
    "https://gs1.github.io/EPCIS/epcis-context.jsonld": (
        "14b10c9d3e92d35f577bfc610fe5ec15aa2941124987919389d7cd9998516861.jsonld"
    ),
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld": (
        "e532647e8eb371379b8b0e8602d8981c8566bc60f7351f22c76a5bc865962008.jsonld"
    ),
}


def load_json(body: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse an untrusted feed body: UTF-8 JSON, no NaN/Infinity, no duplicate keys, bounded size and depth.

    Raises :class:`FeedError` ``too_large`` or ``malformed``.
    """
    if len(body) > max_bytes:
        raise FeedError("too_large", f"body is {len(body)} bytes, the limit is {max_bytes}", limit=max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedError("malformed", f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    check_nesting(text, max_depth)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise FeedError(
            "malformed", f"body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise FeedError("too_large", f"body nests deeper than {max_depth} levels", limit=max_depth) from exc
    except ValueError as exc:  # raised by the hooks below
        raise FeedError("malformed", str(exc)) from exc


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON of ``obj``: the exact bytes stored for a logistics event.

    Raises ``rfc8785.CanonicalizationError`` (a ``ValueError``) for values JCS cannot represent, such as
    integers beyond ±(2**53 - 1) or NaN.
    """
    return rfc8785.dumps(obj)


def content_sha256(obj: Any) -> bytes:
    """SHA-256 (32 bytes) of the canonical JSON of ``obj``: the ``evidenceHash`` of a logistics event."""
    return hashlib.sha256(canonical_bytes(obj)).digest()


def cbv_event_hash(event: Mapping[str, Any], context: Any) -> str | None:
    """GS1 CBV 2.0 event hash (``ni:///sha-256;<hex>?ver=CBV2.0``) of one EPCIS 2.0 JSON-LD event.

    ``context`` is the ``@context`` of the document the event came from (``None`` if it had none). The event
    is hashed alone, wrapped in a one-event document with that context, so that its hash never depends on its
    neighbours. Best effort: any failure of the reference implementation gives ``None`` (logged at debug
    level); this never raises, never touches the network and never prints.
    """
    document: dict[str, Any] = {
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "epcisBody": {"eventList": [copy.deepcopy(dict(event))]},
    }
    if context is not None:
        document["@context"] = copy.deepcopy(context)
    try:
        with _generator_lock:
            hashes = _run_generator(_generator(), document)
    except Exception as exc:  # the reference implementation fails in many ways; none of them is ours to raise
        log.debug("CBV event hash failed for event %r: %r", event.get("eventID"), exc)
        return None
    if len(hashes) != 1 or not isinstance(hashes[0], str):
        log.debug("CBV event hash produced no hash for event %r", event.get("eventID"))
        return None
    return hashes[0]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Two parsers may keep different copies of a duplicated key: refuse rather than guess.
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def check_nesting(text: str, max_depth: int) -> None:
    """Refuse deep nesting before any recursive parser sees it.

    ``json.loads`` recurses once per level and py-evm / py_ecc raise the interpreter's recursion limit to
    100 000 on import, so in the service process a body of 100 000 ``[`` overflows the C stack (a segfault,
    not a ``RecursionError``). This check is linear and recursion-free: drop strings, keep the brackets, and
    strip innermost ``[]`` / ``{}`` pairs once per level.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return
        reduced = _INNERMOST_PAIR.sub("", brackets)
        if reduced == brackets:
            raise FeedError("malformed", "body is not JSON: unbalanced brackets")
        brackets = reduced
    if brackets:
        raise FeedError("too_large", f"body nests deeper than {max_depth} levels", limit=max_depth)


# --- the reference implementation, tamed ----------------------------------------------------------------


@dataclass(frozen=True)
class _Generator:
    json_to_py: ModuleType
    hash_generator: ModuleType
    jsonld: ModuleType


class _QuietLogging:
    """Stands in for the ``logging`` module inside the generator: every record goes to one debug logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.pop("stacklevel", None)
        self._logger.debug(msg, *args, **kwargs)

    debug = info = warning = error = exception = critical = _debug


_generator_lock = threading.Lock()
_loaded: _Generator | None = None


def _generator() -> _Generator:
    """Import the generator once (caller holds the lock), undoing its import-time side effects."""
    global _loaded
    if _loaded is None:
        saved_path = list(sys.path)
        try:
            json_to_py = importlib.import_module(f"{_GENERATOR_PACKAGE}.json_to_py")
            hash_generator = importlib.import_module(f"{_GENERATOR_PACKAGE}.hash_generator")
            jsonld = importlib.import_module("pyld.jsonld")
        finally:
            sys.path[:] = saved_path
        quiet = _QuietLogging(logging.getLogger(_GENERATOR_PACKAGE))
        for name, module in list(sys.modules.items()):
            if name.startswith(f"{_GENERATOR_PACKAGE}.") and getattr(module, "logging", None) is logging:
                module.logging = quiet  # type: ignore[attr-defined]
        _loaded = _Generator(json_to_py, hash_generator, jsonld)
    return _loaded


def _run_generator(gen: _Generator, document: dict[str, Any]) -> list[Any]:
    previous_loader = gen.jsonld.get_document_loader()
    gen.jsonld.set_document_loader(_offline_document_loader)
    # The namespace table is module state: it would carry prefixes from earlier documents into this one.
    gen.json_to_py._namespaces.clear()
    try:
        events = gen.json_to_py.event_list_from_epcis_document_json(document)
        hashes = gen.hash_generator.epcis_hashes_from_events(events)
    finally:
        gen.json_to_py._namespaces.clear()
        gen.jsonld.set_document_loader(previous_loader)
    return list(hashes)


def _offline_document_loader(url: str, options: Any = None) -> dict[str, Any]:
    """JSON-LD document loader that serves the bundled EPCIS contexts and refuses everything else."""
    filename = _BUNDLED_CONTEXTS.get(url)
    if filename is None:
        raise LookupError(f"JSON-LD context {url!r} is not bundled; contexts are never fetched")
    resource = importlib.resources.files(_GENERATOR_PACKAGE).joinpath(filename)
    document = json.loads(resource.read_text(encoding="utf-8"))
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": document,
        # the bundled files never change (they are named by their hash): pyld keeps a context whose document
        # is tagged "static" in its process-wide cache, and without the tag it loaded and processed the
        # 20 KB EPCIS context again for every event hashed (issue 8: the inbox sweep's profile)
        "tag": "static",
    }
