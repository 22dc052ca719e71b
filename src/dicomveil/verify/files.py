"""One output file's check: read it, walk its elements once, and hand each to the checks."""

from __future__ import annotations

import io
import warnings
from typing import Final

from pydicom import dcmread
from pydicom.dataset import Dataset

from .conformance import (
    _check_meta,
    _check_preamble,
    _conform,
    _conform_sequence,
    _original_kept,
    _unused_creators,
)
from .context import _FileState, _Outcome
from .elements import _encodings, _items, _Node, _nodes, _text, _values
from .leaks import _check_name, _inflated, _pdf_streams, _search
from .references import _match, _uid_element, _uid_pairs
from .report import Category, RiskKind
from .risks import _risks
from .validity import _iod, _report_invalid, _shape, _validate

_DIRECTORY_CLASS: Final = "1.2.840.10008.1.3.10"


class _FileCheck(_FileState):
    """The checks of one output file (see :class:`_FileState` for what they collect)."""

    def run(self) -> _Outcome:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._run()
        return self.outcome

    def _run(self) -> None:
        _check_name(self)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self.add("", Category.UNREADABLE, f"cannot read ({exc.strerror})")
            return
        if len(data) < 132 or data[128:132] != b"DICM":
            self.add("", Category.NO_PREFIX, "no DICM prefix after the preamble")
        try:
            ds = dcmread(io.BytesIO(data))
            ds.keys()
        except Exception as exc:
            self.add(
                "",
                Category.UNREADABLE,
                f"pydicom cannot parse it ({type(exc).__name__})",
            )
            _search(self, data, None, [])
            return
        meta = getattr(ds, "file_meta", None)
        sop_class = _text(meta, 0x00020002) if isinstance(meta, Dataset) else ""
        self.outcome.directory = sop_class == _DIRECTORY_CLASS
        inflated = _inflated(data, ds)
        try:
            if isinstance(meta, Dataset):
                self._walk(meta, ("ascii",), 0, (), "", 0, False)
            self._walk(ds, ("ascii",), inflated.base if inflated else 0, (), "", 0, False)
            if isinstance(meta, Dataset):
                _check_meta(self, meta, ds)
            _risks(self, ds)
        except Exception as exc:  # pydicom raises many kinds on a malformed element
            self.add(
                "",
                Category.UNREADABLE,
                f"an element cannot be read ({type(exc).__name__})",
            )
        _check_preamble(self, data)
        matched = _match(self, ds)
        self.original = self.ctx.replaced.get(matched, {}) if matched is not None else {}
        _search(self, data, ds, _pdf_streams(ds), inflated)
        self._compare(matched)
        _iod(self, matched)

    def _walk(
        self,
        ds: Dataset,
        inherited: tuple[str, ...],
        base: int,
        key: tuple[int, ...],
        prefix: str,
        depth: int,
        quiet: bool,
    ) -> None:
        """Check every element of one dataset (and its items); ``quiet`` inside a finding."""
        rules = self.ctx.rules
        encodings, unknown = _encodings(ds, inherited)
        if unknown:
            self.add(
                prefix + "SpecificCharacterSet",
                Category.CHARACTER_SET,
                f"{len(unknown)} unknown character set term(s)",
            )
        creators: dict[int, str] = {}  # creator tag -> path
        used: set[int] = set()  # creator tags of blocks with elements
        for node in _nodes(ds, base, key, prefix, encodings, depth):
            group, number = node.tag >> 16, node.tag & 0xFFFF
            if node.is_creator:
                creators[node.tag] = node.path
                self._record(node)
                continue
            if node.private and number > 0x00FF:
                used.add((group << 16) | (number >> 8))
            if number == 0 and group != 0x0002:
                continue  # group length: no content
            expect, letters = rules.decide(node)
            if self.outcome.directory and depth:
                # A directory record needs some keys (PS3.3 F.5): placeholders are fine there,
                # and originals are caught by the leak search.
                letters = letters | {"D"}
            if node.vr == "SQ":
                noisy = not quiet and _conform_sequence(self, ds, node, expect, letters)
                items = list(_items(ds, node))
                _shape(self, node, [], len(items))
                for item, item_base, item_key, item_prefix in items:
                    self._walk(
                        item, encodings, item_base, item_key, item_prefix, depth + 1, not noisy
                    )
                continue
            self._record(node)
            values, legal = _values(node)
            _shape(self, node, values)
            _validate(self, node, values, legal)
            if node.vr == "UI" or (node.private and node.vr == "UN"):
                _uid_element(self, node, values, expect)
            if not quiet and group != 0x0002:
                _conform(self, node, values, expect, letters)
            if node.private:
                label = f'({group:04X},"{node.creator}")' if node.creator else f"({group:04X})"
                self.blocks[prefix + label] = self.blocks.get(prefix + label, 0) + 1
            if not quiet and node.tag in rules.descriptors and values:
                self.flag(node.path, RiskKind.FREE_TEXT, "free text kept: review it for PHI")
        if rules.keep_private or quiet:
            return
        _unused_creators(self, creators, used)

    def _record(self, node: _Node) -> None:
        if node.start >= 0 and node.length and node.length != 0xFFFFFFFF:
            self.spans.append((node.start, node.start + node.length, node))

    def _compare(self, source: str | None) -> None:
        """Against the matched input: originals kept, inherited invalid values, UID pairs."""
        _original_kept(self)
        _report_invalid(self, source)
        _uid_pairs(self)
