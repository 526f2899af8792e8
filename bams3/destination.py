"""What a conversion may write, replace and delete at its destination: only what bams3 owns.

bams3 owns, at a destination, exactly:

- ``_metadata.json``, when it is bams3 metadata;
- the objects under the data prefix that metadata names (``data/<run>/``);
- the objects under ``data/<run>/`` of a run that marked the prefix as its own before
  writing anything else (``data/<run>/_run``): an interrupted or concurrent conversion.

Everything else is the user's. A destination holding anything of the user's and no
dataset is refused (``--force`` or not); ``--force`` replaces a dataset and leaves the
user's objects beside it alone. ``_metadata.json`` is published with a conditional
write (create-only, or compare-and-swap on the version that was replaced), so of two
conversions to one destination exactly one publishes; the other fails and removes
only its own run. After publishing, a conversion removes the replaced dataset's run and
the runs that were already there when it started: those started earlier and can no
longer publish (their condition no longer holds).
"""

from __future__ import annotations

import json
import re

import attrs

from .errors import DatasetExistsError
from .format import METADATA_KEY, MAX_METADATA_BYTES

RUN_MARKER = "_run"
_RUN = re.compile(r"data/([0-9a-f]{12})/")


def run_marker(prefix: str) -> str:
    return prefix + RUN_MARKER


@attrs.frozen
class Destination:
    """What a conversion found at its destination before writing anything."""

    version: str | None  # the version of the _metadata.json it replaces (None: there is none)
    exists: bool  # a dataset is there
    replaced_prefix: str | None  # that dataset's data prefix
    leftovers: tuple[str, ...]  # data prefixes of runs that marked themselves and never published
    foreign: tuple[str, ...]  # objects that are not bams3's (left alone)


def _bams3_metadata(store) -> tuple[bool, str | None, str | None]:
    """(is bams3 metadata, its data prefix, its version) of the _metadata.json at the destination."""
    head = store.head(METADATA_KEY)
    if head is None:
        return False, None, None
    try:
        data = store.get_range(METADATA_KEY, 0, min(int(head["size"]), MAX_METADATA_BYTES) + 1)
    except FileNotFoundError:  # removed meanwhile
        return False, None, None
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict) or obj.get("format") != "bams3":
        return False, None, head["version"]
    prefix = obj.get("data_prefix")
    if not (isinstance(prefix, str) and re.fullmatch(r"data/[A-Za-z0-9_-]{1,64}/", prefix)):
        prefix = None  # damaged: its chunks cannot be told from anything else, and are left alone
    return True, prefix, head["version"]


def inspect(store, dst: str, force: bool) -> Destination:
    """Look at the destination; refuse it (DatasetExistsError) unless bams3 may write there."""
    has_meta_file = store.head(METADATA_KEY) is not None
    is_ours, prefix, version = _bams3_metadata(store) if has_meta_file else (False, None, None)
    keys = [k for k, _ in store.list("")]
    marked = {m.group(0) for k in keys if (m := _RUN.match(k)) and k == m.group(0) + RUN_MARKER}
    owned = set(marked) | ({prefix} if prefix else set())
    foreign = [k for k in keys if k != METADATA_KEY and not any(k.startswith(p) for p in owned)]
    if has_meta_file and not is_ours:
        raise DatasetExistsError(f"{dst} holds a _metadata.json that is not bams3 metadata; "
                                 "bams3 will not replace it (choose another destination)")
    if is_ours and not force:
        raise DatasetExistsError(f"{dst} already holds a bams3 dataset; pass --force to replace it")
    if not is_ours and foreign:
        raise DatasetExistsError(
            f"{dst} is not empty and holds no bams3 dataset (found {foreign[0]!r}); bams3 writes only "
            "to an empty destination, or replaces a bams3 dataset with --force")
    return Destination(version=version if is_ours else None, exists=is_ours, replaced_prefix=prefix,
                       leftovers=tuple(sorted(marked - {prefix})), foreign=tuple(foreign))
