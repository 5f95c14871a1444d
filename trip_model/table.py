"""A LightGBM model compiled into a table over its decision regions: one lookup per ride.

Every split of a tree tests one feature, so the rides that take the same path through *every* tree
form a box: a class of pickup zones x a class of dropoff zones x an interval of distances between
two consecutive thresholds. The model's output is constant on each box. This module enumerates
the boxes (zone classes from the categorical splits, distance intervals from the numeric
thresholds; LightGBM bins a feature into at most `max_bin` intervals, so there are few), and sums
each tree's leaf value into every box in tree order, starting from 0.0 as LightGBM's own
`PredictRaw` does. A prediction is then a zone-class lookup, a binary search over the distance
thresholds and one read from the table: bit-identical to the booster, tens of times faster.

It covers the models this repository trains (LightGBM regressor on pickup zone, dropoff zone and
distance, identity output); `compile_booster` returns None for anything else, and callers verify
the table against the pyfunc before using it (trip_model.predict).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

# LightGBM's kZeroThreshold (`1e-35f`): |x| <= this counts as zero for MissingType::Zero splits.
K_ZERO = float(np.float32(1e-35))
# Objectives whose output is the raw score (no link function).
IDENTITY_OBJECTIVES = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
# Above this many boxes (8 bytes each) the table is not worth its memory; use the booster.
MAX_CELLS = 40_000_000
# Working set per block of the table while it is summed: the size that was fastest, smaller and
# larger blocks both slower (docs/benchmarks.md).
_CACHE_BYTES = 16 << 20
# Distance lookup grid: cells of 1/GRID (a thousandth of a mile). TLC distances have two
# decimals and LightGBM's thresholds fall between them, so nearly every ride lands in a cell with
# no threshold, whose atom is read off; the rest are binary-searched.
GRID = 1000
_EPS = 1e-9


@dataclass(frozen=True)
class RegionTable:
    """Predict with `predict(pu, do, distance)`: zones as integers in 1..max_zone."""

    zone_class: tuple[np.ndarray, np.ndarray]  # per feature: zone -> class index (index 0 unused)
    thresholds: np.ndarray  # sorted distinct distance thresholds
    zero_atom: int | None  # distance atom for |x| <= K_ZERO, if a split treats zero as missing
    values: np.ndarray  # flat (distance atom, pickup class, dropoff class) -> prediction
    shape: tuple[int, int, int] = dataclasses.field(init=False)  # distance atoms, pu, do classes

    def __post_init__(self) -> None:
        # The grid: each cell's atom, and whether a threshold (or zero) lies in or next to it.
        top = float(self.thresholds[-1]) if len(self.thresholds) else 0.0
        cells = int(np.ceil(max(top, 0.0) * GRID)) + 2  # the last cell lies above every threshold
        lower = np.arange(cells) / GRID
        upper = (np.arange(cells) + 1) / GRID
        near = np.searchsorted(self.thresholds, upper + _EPS, side="right") > np.searchsorted(
            self.thresholds, lower - _EPS, side="left"
        )
        if self.zero_atom is not None:
            near[0] = True
        object.__setattr__(self, "_cell_atom", self._exact_atoms((lower + upper) / 2))
        object.__setattr__(self, "_cell_near", near)
        n_pu, n_do = (int(c.max()) + 1 for c in self.zone_class)
        object.__setattr__(self, "shape", (len(self.values) // (n_pu * n_do), n_pu, n_do))
        # The same lookups as Python lists, for one ride (predict_one).
        object.__setattr__(self, "_lists", (
            self._cell_atom.tolist(), near.tolist(), self.thresholds.tolist(),
            self.zone_class[0].tolist(), self.zone_class[1].tolist(),
        ))  # fmt: skip

    def _exact_atoms(self, distance: np.ndarray) -> np.ndarray:
        # Atom k holds (t[k-1], t[k]]: a split `x <= t` sends it left exactly when t >= t[k].
        atoms = np.searchsorted(self.thresholds, distance, side="left")
        if self.zero_atom is not None:
            atoms[np.abs(distance) <= K_ZERO] = self.zero_atom
        return atoms

    def distance_atoms(self, distance: np.ndarray) -> np.ndarray:
        last = len(self._cell_atom) - 1
        # fmax/fmin map NaN to cell 0; it and negatives are then searched like near cells.
        cell = np.fmin(np.fmax(distance * GRID, 0.0), last).astype(np.intp)
        atoms = self._cell_atom.take(cell)
        exact = self._cell_near.take(cell) | ~(distance >= 0)
        if exact.any():
            atoms[exact] = self._exact_atoms(distance[exact])
        return atoms

    def predict(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        if len(distance) == 1:
            return np.array([self.predict_one(int(pu[0]), int(do[0]), float(distance[0]))])
        _, n_pu, n_do = self.shape
        index = self.distance_atoms(distance).astype(np.intp)
        index *= n_pu
        index += self.zone_class[0][pu]
        index *= n_do
        index += self.zone_class[1][do]
        return self.values.take(index)

    def predict_one(self, pu: int, do: int, distance: float) -> float:
        """One ride, the same lookups in plain Python: for one ride the dozen NumPy calls of
        `predict` cost far more than the lookups themselves (the API's /predict). Equal to `predict` bit for bit
        (tested over the check set, and checked by trip_model.predict.choose at load)."""
        cell_atom, cell_near, thresholds, pu_class, do_class = self._lists
        _, n_pu, n_do = self.shape
        if distance != distance:  # NaN (refused before it gets here): sorted last, as NumPy does
            atom = len(thresholds)
        elif distance >= 0 and not cell_near[cell := int(min(distance * GRID, len(cell_near) - 1))]:
            atom = cell_atom[cell]
        elif self.zero_atom is not None and abs(distance) <= K_ZERO:
            atom = self.zero_atom
        else:
            atom = bisect_left(thresholds, distance)
        return float(self.values[(atom * n_pu + pu_class[pu]) * n_do + do_class[do]])


def _decisions(node: dict, values: np.ndarray) -> np.ndarray:
    """Which of these feature values a split sends left, by LightGBM's rules (tree.h,
    Numerical/CategoricalDecision). No NaN reaches the table: such rides are refused first."""
    if node["decision_type"] == "==":
        # A value is cast to int; listed categories go left, anything else right.
        listed = np.zeros(int(values.max()) + 1, dtype=bool)
        categories = np.array([int(c) for c in str(node["threshold"]).split("||")])
        listed[categories[(categories >= 0) & (categories < len(listed))]] = True
        as_int = values.astype(np.int64)
        return np.where(as_int >= 0, listed[np.clip(as_int, 0, None)], False)
    if node["decision_type"] != "<=":
        raise ValueError(f"unknown decision type {node['decision_type']!r}")
    values = values.astype(np.float64)
    left = values <= float(node["threshold"])
    if node["missing_type"] == "Zero":
        left = np.where(np.abs(values) <= K_ZERO, bool(node["default_left"]), left)
    return left


def _nodes(tree: dict):
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if "split_index" in node:
            stack.extend((node["left_child"], node["right_child"]))


def _leaf_values(tree: dict, decisions: dict[int, np.ndarray], n_codes: tuple[int, ...]):
    """The tree's leaf value for every combination of per-feature codes (a small dense array).

    `decisions[split_index][c]` says whether that split sends code c of its feature left. The
    walk is vectorised over the combinations: one step per tree level."""
    splits = [n for n in _nodes(tree) if "split_index" in n]
    leaves = [n for n in _nodes(tree) if "split_index" not in n]
    if not splits:
        return np.full(n_codes, float(tree["leaf_value"]))
    index = {id(n): i for i, n in enumerate(splits)}
    leaf_index = {id(n): i for i, n in enumerate(leaves)}

    def child(n: dict) -> int:  # splits >= 0, leaves as ~leaf
        return index[id(n)] if "split_index" in n else ~leaf_index[id(n)]

    feature = np.array([n["split_feature"] for n in splits], dtype=np.intp)
    left = np.array([child(n["left_child"]) for n in splits], dtype=np.intp)
    right = np.array([child(n["right_child"]) for n in splits], dtype=np.intp)
    width = max(n_codes)
    go_left = np.zeros((len(splits), width), dtype=bool)
    for i, n in enumerate(splits):
        row = decisions[n["split_index"]]
        go_left[i, : len(row)] = row
    combos = np.stack(np.meshgrid(*(np.arange(k) for k in n_codes), indexing="ij"), -1)
    combos = combos.reshape(-1, 3)
    at = np.zeros(len(combos), dtype=np.intp)
    walking = np.arange(len(combos))
    while len(walking):
        node = at[walking]
        code = combos[walking, feature[node]]
        at[walking] = np.where(go_left[node, code], left[node], right[node])
        walking = walking[at[walking] >= 0]
    values = np.array([float(n["leaf_value"]) for n in leaves])
    return values[~at].reshape(n_codes)


def _codes(rows: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group n atoms by their decisions at the given splits: (code per atom, first atom per code)."""
    if not rows:
        return np.zeros(n, dtype=np.intp), np.zeros(1, dtype=np.intp)
    _, first, code = np.unique(np.stack(rows), axis=1, return_index=True, return_inverse=True)
    return code.ravel().astype(np.intp), first.astype(np.intp)


def compile_booster(booster, max_zone: int, max_cells: int = MAX_CELLS) -> RegionTable | None:
    """The region table of a LightGBM booster whose features are (pickup zone, dropoff zone,
    distance); None if the model is of another shape or the table would be too large."""
    model = booster.dump_model()
    if (
        model.get("objective", "").split(" ")[0] not in IDENTITY_OBJECTIVES
        or " sqrt" in model.get("objective", "")
        or model.get("num_tree_per_iteration") != 1
        or model.get("average_output")
        or model.get("max_feature_idx") != 2
    ):
        return None
    trees = [info["tree_structure"] for info in model["tree_info"]]
    nodes = [node for tree in trees for node in _nodes(tree)]
    if any(node.get("leaf_coeff") for node in nodes):  # linear trees: not piecewise constant
        return None
    splits = [node for node in nodes if "split_index" in node]
    if any(n["split_feature"] == 2 and n["decision_type"] != "<=" for n in splits):
        return None

    # Distance atoms: the intervals between consecutive thresholds, each represented by its upper
    # end (or just above the last threshold), plus zero if a split treats zero as missing.
    thresholds = np.unique([float(n["threshold"]) for n in splits if n["split_feature"] == 2])
    thresholds = thresholds.astype(np.float64)
    reps = np.append(thresholds, np.nextafter(thresholds[-1], np.inf) if len(thresholds) else 0.0)
    zero_atom = None
    if any(n["split_feature"] == 2 and n["missing_type"] == "Zero" for n in splits):
        zero_atom = len(reps)
        reps = np.append(reps, 0.0)
    zones = np.arange(1, max_zone + 1, dtype=np.int64)
    axes = (zones, zones, reps)
    try:
        left = {id(n): _decisions(n, axes[n["split_feature"]]) for n in splits}
    except ValueError:
        return None

    # Zone classes: the zones that every split treats alike.
    zone_class, class_rep = [], []
    for f in (0, 1):
        code, first = _codes([left[id(n)] for n in splits if n["split_feature"] == f], max_zone)
        zone_class.append(np.concatenate([[0], code]).astype(np.intp))  # indexed by zone
        class_rep.append(first)  # index into the zone axis
    shape = (len(reps), len(class_rep[0]), len(class_rep[1]))
    if np.prod(shape) > max_cells:
        return None

    # Each tree, reduced to its leaf value per (pickup code, dropoff code, distance code), with
    # the code of every zone class and distance atom under that tree's splits.
    on_axis = (class_rep[0], class_rep[1], np.arange(len(reps)))
    reduced = []
    for tree in trees:
        tree_splits = [n for n in _nodes(tree) if "split_index" in n]
        decisions: dict[int, np.ndarray] = {}
        codes = []
        for f in range(3):
            mine = [n for n in tree_splits if n["split_feature"] == f]
            rows = [left[id(n)][on_axis[f]] for n in mine]
            code, first = _codes(rows, len(on_axis[f]))
            for node, row in zip(mine, rows, strict=True):
                decisions[node["split_index"]] = row[first]
            codes.append((code, len(first)))
        leaf = _leaf_values(tree, decisions, tuple(n for _, n in codes))
        reduced.append((leaf, *(code for code, _ in codes)))

    # Sum the trees into the table in tree order, a block of distance atoms at a time so the
    # block stays in the CPU cache across all trees (the sums are memory-bound otherwise).
    table = np.zeros(shape, dtype=np.float64)
    step = max(1, _CACHE_BYTES // (shape[1] * shape[2] * 8))
    for lo in range(0, shape[0], step):
        block = table[lo : lo + step]
        for leaf, pu_code, do_code, dist_code in reduced:
            codes = dist_code[lo : lo + step]
            # Runs of atoms with the same code (a tree's distance splits cut intervals).
            cuts = np.flatnonzero(np.diff(codes)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(codes)], strict=True):
                plane = np.take(leaf[:, :, codes[a]][pu_code], do_code, axis=1)
                block[a:b] += plane
    return RegionTable(
        zone_class=(zone_class[0], zone_class[1]),
        thresholds=thresholds,
        zero_atom=zero_atom,
        values=table.ravel(),
    )
