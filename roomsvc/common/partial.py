"""Google's `fields` partial-response selector (docs/spec.md §3: honoured, never rejected).

Grammar: `a,b/c,d(e,f/g)`; `*` selects everything at its level; selectors apply to each
element of a list. A selector that does not parse is an `InvalidArgument` naming `fields`.
"""

from __future__ import annotations

from typing import Any

from roomsvc.common.errors import N_, InvalidArgument

Selection = dict[str, "Selection | None"]  # None = the whole value


def parse_fields(text: str) -> Selection:
    selection, pos = _parse_list(text.replace(" ", ""), 0)
    if pos != len(text.replace(" ", "")):
        raise InvalidArgument(N_("Invalid field selector in {field}."), field="fields")
    return selection


def _parse_list(text: str, pos: int) -> tuple[Selection, int]:
    selection: Selection = {}
    while True:
        start = pos
        while pos < len(text) and text[pos] not in ",()":
            pos += 1
        path = text[start:pos].split("/")
        if not all(path):
            raise InvalidArgument(N_("Invalid field selector in {field}."), field="fields")
        sub: Selection | None = None
        if pos < len(text) and text[pos] == "(":
            sub, pos = _parse_list(text, pos + 1)
            if pos >= len(text) or text[pos] != ")":
                raise InvalidArgument(N_("Invalid field selector in {field}."), field="fields")
            pos += 1
        _merge_path(selection, path, sub)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return selection, pos


def _merge_path(selection: Selection, path: list[str], leaf: Selection | None) -> None:
    node = selection
    for name in path[:-1]:
        child = node.get(name, {})
        if child is None:
            return  # already selected whole
        node[name] = child
        node = child
    last = path[-1]
    if last in node and node[last] is None:
        return
    if leaf is None or last not in node:
        node[last] = leaf
    else:
        existing = node[last]
        if existing is not None:
            existing.update(leaf)


def apply_fields(value: Any, selection: Selection | None) -> Any:
    if selection is None or ("*" in selection and len(selection) == 1):
        return value
    if isinstance(value, list):
        return [apply_fields(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in selection:
        return value
    return {k: apply_fields(value[k], sub) for k, sub in selection.items() if k in value}
