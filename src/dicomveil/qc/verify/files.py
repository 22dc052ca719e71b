"""One output file's check: read it, walk its elements once, and hand each to the checks."""

from __future__ import annotations

import warnings
from functools import partial
from typing import Final

from dicomveil.qc.verify.conformance import (
    _check_meta,
    _check_preamble,
    _conform,
    _conform_sequence,
    _original_kept,
    _unused_creators,
)
from dicomveil.qc.verify.context import _FileState, _Outcome
from dicomveil.qc.verify.elements import (
    _MAX_VALUES,
    _MEMO_BYTES,
    _Data,
    _encodings,
    _items,
    _nodes,
    _text,
    _values,
)
from dicomveil.qc.verify.leaks import _check_name, _inflated, _pdf_streams, _search
from dicomveil.qc.verify.reading import _load_output
from dicomveil.qc.verify.references import _match, _uid_element, _uid_pairs
from dicomveil.qc.verify.report import Category, IodCheck, RiskKind
from dicomveil.qc.verify.risks import _risks
from dicomveil.qc.verify.validity import (
    _VALID,
    _iod,
    _report_invalid,
    _shape,
    _shape_passed,
    _validate,
)

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
            loaded = _load_output(self.path)
        except OSError as exc:
            self.add("", Category.UNREADABLE, f"cannot read ({exc.strerror})")
            return
        image = loaded.image
        if image.size < 132 or image.head[128:132] != b"DICM":
            self.add("", Category.NO_PREFIX, "no DICM prefix after the preamble")
        if loaded.read is None:
            error = type(loaded.error).__name__
            self.add("", Category.UNREADABLE, f"pydicom cannot parse it ({error})")
            _search(self, image, None, [])
            return
        meta, ds = loaded.read.meta, loaded.read.data
        self.outcome.directory = _text(meta, 0x00020002) == _DIRECTORY_CLASS
        inflated = _inflated(image, meta)
        base = inflated.base if inflated else 0
        self.walked = [(meta, 0), (ds, base)]
        try:
            self._walk(meta, ("ascii",), 0, (), "", 0, False)
            self._walk(ds, ("ascii",), base, (), "", 0, False)
            _check_meta(self, meta, ds)
            _risks(self, ds)
        except Exception as exc:  # pydicom raises many kinds on a malformed element
            self.add(
                "",
                Category.UNREADABLE,
                f"an element cannot be read ({type(exc).__name__})",
            )
        _check_preamble(self, image.head)
        matched = _match(self, ds)
        self.original = self.ctx.replaced.get(matched, {}) if matched is not None else {}
        _search(self, image, ds, _pdf_streams(ds), inflated)
        self._compare(matched)
        _iod(self, matched)

    def _walk(
        self,
        ds: _Data,
        inherited: tuple[str, ...],
        base: int,
        key: tuple[int, ...],
        prefix: str,
        depth: int,
        quiet: bool,
    ) -> None:
        """Check every element of one dataset (and its items); ``quiet`` inside a finding.

        This runs for every element of every file: what every element needs is looked up
        once per dataset, and the checks that apply to few are tested before they are
        called. Most elements of an output are kept values (technical ones) whose only check
        is validity, and most such values come back file after file: one whose bytes were
        found valid before builds no node (:attr:`_Rules.passable`). Where element values lie is
        found only when the leak search needs it (:attr:`_FileState.spans`)."""
        ctx = self.ctx
        rules = ctx.rules
        encodings, unknown = _encodings(ds, inherited)
        if unknown:
            self.add(
                prefix + "SpecificCharacterSet",
                Category.CHARACTER_SET,
                f"{len(unknown)} unknown character set term(s)",
            )
        creators: dict[int, str] = {}  # creator tag -> path
        used: set[int] = set()  # creator tags of blocks with elements
        decided, descriptors, invalid = rules.decided, rules.descriptors, self.invalid
        directory = self.outcome.directory and depth
        shaping = ctx.iod is IodCheck.STRUCTURE and ctx.dciodvfy is not None
        valid = _VALID
        fast = None if directory else (rules.passable, valid)
        shaped = partial(_shape_passed, self, encodings) if shaping else None
        for node in _nodes(ds, base, key, prefix, encodings, depth, passable=fast, shaped=shaped):
            tag = node.tag
            group, number = tag >> 16, tag & 0xFFFF
            private = node.private
            if private and 0x0010 <= number <= 0x00FF:  # a private creator
                creators[tag] = node.path
                continue
            if private and number > 0x00FF:
                used.add((group << 16) | (number >> 8))
            if number == 0 and group != 0x0002:
                continue  # group length: no content
            expect, letters = decided[(tag, node.vr, node.creator)]
            if directory:
                # A directory record needs some keys (PS3.3 F.5): placeholders are fine there,
                # and originals are caught by the leak search.
                letters = letters | {"D"}
            vr = node.vr
            if vr == "SQ":
                noisy = not quiet and _conform_sequence(self, ds, node, expect, letters)
                items = list(_items(ds, node))
                if shaping:
                    _shape(self, node, [], len(items))
                for item, item_base, item_key, item_prefix in items:
                    self._walk(
                        item, encodings, item_base, item_key, item_prefix, depth + 1, not noisy
                    )
                continue
            values, legal = _values(node)
            if shaping:
                _shape(self, node, values)
            found = len(invalid)
            _validate(self, node, values, legal)
            raw = node.raw
            if raw is not None and len(invalid) == found and len(raw) <= _MEMO_BYTES:
                if len(valid) >= _MAX_VALUES:
                    valid.clear()
                valid.add((vr, encodings, raw))
            if vr == "UI" or (private and vr == "UN"):
                _uid_element(self, node, values, expect)
            if not quiet and group != 0x0002 and "K" not in letters:
                _conform(self, node, values, expect, letters)
            if private:
                label = f'({group:04X},"{node.creator}")' if node.creator else f"({group:04X})"
                self.blocks[prefix + label] = self.blocks.get(prefix + label, 0) + 1
            if not quiet and values and tag in descriptors:
                self.flag(node.path, RiskKind.FREE_TEXT, "free text kept: review it for PHI")
        if rules.keep_private or quiet:
            return
        _unused_creators(self, creators, used)

    def _compare(self, source: str | None) -> None:
        """Against the matched input: originals kept, inherited invalid values, UID pairs."""
        _original_kept(self)
        _report_invalid(self, source)
        _uid_pairs(self)
