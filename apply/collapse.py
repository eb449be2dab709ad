"""Net effect of a run of row changes, per row identity (DESIGN.md: Apply).

Inside a group of source transactions the applier does not replay statements: it folds every
change of a table into the final state of each row it touched, then writes those states with
a few set-based statements. The fold gives exactly the result of replaying one by one:

* keyed tables (primary key, unique NOT NULL key, or a tagged source column) — per key:
  insert → row is new with its image; update → row gets the after image (``UNCHANGED``
  values filled from what the group already knows, else left to the target); delete → row
  is gone; an update that changes the key moves the row (old key gone, new key present);
  delete then insert of one key is an update of an existing row.
* keyless tables — identical rows are indistinguishable, so the table is a multiset of
  images: insert adds one, delete removes one, update removes the before image and adds the
  after image; what is left is "delete n copies of image A" and "insert m copies of B".

A change the fold cannot represent (a key change whose after image lacks values the group
does not know) is refused by :meth:`TableCollapse.add`; the applier writes it on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from connectors.base import TableBatch
from connectors.errors import SchemaError
from connectors.model import UNCHANGED, Change, Op, Row, TableSchema, Value, row_key

__all__ = ["TableCollapse"]

_INSERT, _DELETE = Op.INSERT, Op.DELETE


@dataclass(slots=True)
class _State:
    #: whether the row existed on the target before the group, as the source saw it
    existed: bool
    #: the row's image after the group (None: it is gone); may hold UNCHANGED values
    final: Row | None


def _merge(after: Row, known: Row | None) -> Row:
    """``after`` with UNCHANGED values taken from ``known`` where it has them."""
    if known is None or UNCHANGED not in after.values():
        return after
    return {k: (known.get(k, UNCHANGED) if v is UNCHANGED else v) for k, v in after.items()}


def _partial(row: Row) -> bool:
    # `in` runs in C; no value type of the model compares equal to the UNCHANGED singleton
    return UNCHANGED in row.values()


def _getter(columns: tuple[str, ...], schema: TableSchema) -> tuple[Callable[[Row], Any], bool]:
    """A fast hashable identity of a row for ``columns``, and whether it is "plain": an
    ``itemgetter`` (C, no per-value checks) giving the bare value for one column and the
    value tuple for several. Array values are lists, so ``columns`` holding an array go
    through :func:`row_key`, which makes them hashable (always a tuple)."""
    kinds = {c.name: c.kind for c in schema.columns}
    if not columns or any(kinds.get(c) in ("array", None) for c in columns):
        return (lambda row: row_key(row, columns)), False
    return itemgetter(*columns), True


class TableCollapse:
    """Accumulates one target table's changes of a group; :meth:`batch` gives the net effect.

    ``schema`` is the target-side definition (target name, and a tagging column if any);
    ``key`` the identity columns (empty: whole-image identity).
    """

    def __init__(self, schema: TableSchema, key: tuple[str, ...], *, collision: bool) -> None:
        self.schema = schema
        self.key = key
        self.collision = collision
        self.columns = tuple(c.name for c in schema.columns if not c.generated)
        # identities are bare values for a one-column key (tuples in the batch)
        self._key_of, plain_key = _getter(key, schema)
        self._one_key = plain_key and len(key) == 1
        # a keyless image is a tuple of every column: hashable as it is unless a column can
        # hold a list (array), which then needs a hashable twin and the original kept apart
        self._image_of, plain_image = _getter(self.columns, schema)
        self._plain_images = plain_image and len(self.columns) > 1
        self._row_of = itemgetter(*self.columns) if len(self.columns) > 1 else None
        self._states: dict[Any, _State] = {}
        self._images: Counter[tuple[Any, ...]] = Counter()
        self._raw: dict[tuple[Any, ...], tuple[Value, ...]] = {}
        self.changes = 0
        #: some image folded in holds UNCHANGED values (PostgreSQL TOAST)
        self._partials = False

    def __len__(self) -> int:
        return self.changes

    # ------------------------------------------------------------------ folding

    def add(self, change: Change) -> bool:
        """Fold ``change`` in; False when it must be written on its own (see module doc)."""
        if self.key:
            ok = self._add_keyed(change)
        else:
            self._add_keyless(change)
            ok = True
        if ok:
            self.changes += 1
        return ok

    def _add_keyed(self, change: Change) -> bool:
        states = self._states
        op = change.op
        if op is _INSERT:
            after = change.after
            assert after is not None
            if UNCHANGED in after.values():
                self._partials = True
            k = self._key_of(after)
            st = states.get(k)
            if st is None:
                states[k] = _State(False, after)
            else:
                st.final = after
            return True
        old_image = change.before if change.before is not None else change.key
        if old_image is None:
            old_image = change.key or {}
        k_old = self._key_of(old_image)
        st = states.get(k_old)
        if op is _DELETE:
            if st is None:
                states[k_old] = _State(True, None)
            else:
                st.final = None
            return True
        # update
        after = change.after
        assert after is not None
        # one scan for UNCHANGED per change; images without any skip the merge and the
        # partial-image checks here and in batch()
        partial = UNCHANGED in after.values()
        if partial:
            if st is not None and st.final is not None:
                after = _merge(after, st.final)
            partial = _partial(after)
            self._partials = self._partials or partial
        k_new = self._key_of(after)
        if k_new == k_old:
            if st is None:
                states[k_old] = _State(True, after)
            else:
                st.final = after
            return True
        if partial:
            return False  # a moved row whose unchanged values only the target knows
        if st is None:
            states[k_old] = _State(True, None)
        else:
            st.final = None
        dest = states.get(k_new)
        if dest is None:
            states[k_new] = _State(False, after)
        else:
            dest.final = after
        return True

    def _image(self, row: Row) -> tuple[Any, ...]:
        try:
            if self._plain_images:
                image: tuple[Any, ...] = self._image_of(row)
                return image
            values = tuple(row[c] for c in self.columns)
        except KeyError as exc:
            raise SchemaError(
                f"table {self.schema.table} has no key and the trail holds only part of a "
                f"row image (column {exc.args[0]!r} missing)",
                hint="give the source table a primary key, or on PostgreSQL run "
                "ALTER TABLE ... REPLICA IDENTITY FULL and re-snapshot it",
            ) from None
        hashable = row_key(row, self.columns)
        self._raw.setdefault(hashable, values)
        return hashable

    def _add_keyless(self, change: Change) -> None:
        op = change.op
        if op is not _INSERT:  # delete or update
            assert change.before is not None
            self._images[self._image(change.before)] -= 1
        if op is not _DELETE:  # insert or update
            after = change.after
            assert after is not None
            if UNCHANGED in after.values():
                after = _merge(after, change.before)
                if _partial(after):
                    after = {k: (None if v is UNCHANGED else v) for k, v in after.items()}
            self._images[self._image(after)] += 1

    # ------------------------------------------------------------------ result

    def batch(self) -> TableBatch:
        """The net effect as a :class:`TableBatch` for a writer."""
        out = TableBatch(self.schema, self.key, collision=self.collision)
        cols = self.columns
        if not self.key:
            raw = self._raw
            plain = self._plain_images
            for image, n in self._images.items():
                if n < 0:
                    out.deletes.append(image if plain else raw[image])
                    out.delete_counts.append(-n)
                elif n > 0:
                    out.inserts.extend([image if plain else raw[image]] * n)
            return out
        one = self._one_key
        row_of = self._row_of
        partials = self._partials
        for k, st in self._states.items():
            final = st.final
            if final is None:
                # in collision mode the target may hold a row the source inserted in the group
                if st.existed or self.collision:
                    out.deletes.append((k,) if one else k)
                continue
            if partials and _partial(final):
                names = tuple(c for c in cols if c in final and final[c] is not UNCHANGED)
                out.patches.setdefault(names, []).append(tuple(final[c] for c in names))
                continue
            try:
                row = row_of(final)  # type: ignore[misc]
            except (KeyError, TypeError):  # a column the image lacks is NULL
                row = tuple(final.get(c) for c in cols)
            if st.existed:
                out.updates.append(row)
            else:
                out.inserts.append(row)
        return out
