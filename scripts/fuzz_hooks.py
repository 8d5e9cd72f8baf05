"""schemathesis hooks for scripts/fuzz_api.py: count every answer's status per operation.

Loaded by the schemathesis CLI through ``SCHEMATHESIS_HOOKS=fuzz_hooks`` (with ``scripts/`` on
``PYTHONPATH``); the counts are written as JSON to ``TG_FUZZ_STATS`` when the CLI exits, so the caller can
report the exact number of 5xx answers, whatever check flagged them.

It also serialises ``ast.parse``: CPython 3.11 keeps the AST converter's recursion depth in interpreter-wide
state, so two schemathesis workers parsing at once (hypothesis describing a lambda) can fail with
"SystemError: AST constructor recursion depth mismatch" inside schemathesis, reported as a Runtime Error.
"""

from __future__ import annotations

import ast
import atexit
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis

_lock = threading.Lock()
_statuses: Counter[str] = Counter()
_server_errors: list[dict[str, Any]] = []
_calls = 0
_ast_lock = threading.Lock()
_ast_parse = ast.parse


def _serialised_parse(*args: Any, **kwargs: Any) -> Any:
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _serialised_parse


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    global _calls
    status = int(response.status_code)
    with _lock:
        _calls += 1
        _statuses[str(status)] += 1
        if status >= 500 and len(_server_errors) < 50:
            _server_errors.append(
                {
                    "operation": f"{case.method.upper()} {case.path}",
                    "status": status,
                    "body": response.text[:500] if hasattr(response, "text") else "",
                }
            )


def _write() -> None:
    target = os.environ.get("TG_FUZZ_STATS")
    if not target:
        return
    with _lock:
        data = {
            "calls": _calls,
            "statuses": dict(sorted(_statuses.items())),
            "server_errors": sum(n for s, n in _statuses.items() if int(s) >= 500),
            "server_error_samples": _server_errors,
        }
    Path(target).write_text(json.dumps(data, indent=2) + "\n")


atexit.register(_write)
