"""Minimum-cost one-to-one assignment, as `scipy.optimize.linear_sum_assignment` returns it.

DAVIS's unsupervised task matches proposals to objects with SciPy's solver; when several
matchings tie, which one it returns decides which proposal an object is scored with, so ties must
be broken the same way. SciPy implements the shortest augmenting path method of D. F. Crouse,
"On implementing 2D rectangular assignment algorithms" (IEEE TAES, 2016); this is that method
written out in Python, with SciPy's conventions: a tall matrix is solved transposed; a row's
search scans the free columns from the last one down, prefers an unassigned column on equal
path cost, and drops a visited column by moving the last free one into its place; the result is
ordered by row. The matrices here are at most 20 x 20, so plain Python is fast enough.
"""

from __future__ import annotations

import math

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a minimum-cost matching of min(rows, cols) pairs, sorted by row."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a matrix, got shape {cost.shape}")
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("cost matrix contains NaN or -inf")
    transposed = cost.shape[1] < cost.shape[0]
    c = (cost.T if transposed else cost).tolist()
    col_of_row = _solve(c)
    if transposed:  # rows of the transposed problem are the original columns
        pairs = sorted((col, row) for row, col in enumerate(col_of_row))
        return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))
    return np.arange(len(col_of_row), dtype=np.int64), np.array(col_of_row, np.int64)


def _solve(cost: list[list[float]]) -> list[int]:
    """Column of each row for a wide (rows <= cols) cost matrix."""
    num_rows, num_cols = len(cost), len(cost[0])
    u = [0.0] * num_rows
    v = [0.0] * num_cols
    col_of_row = [-1] * num_rows
    row_of_col = [-1] * num_cols
    for start in range(num_rows):
        path = [-1] * num_cols
        dist = [math.inf] * num_cols
        rows_seen = [False] * num_rows
        cols_seen = [False] * num_cols
        free = list(range(num_cols - 1, -1, -1))
        row, reached = start, 0.0
        sink = -1
        while sink == -1:
            rows_seen[row] = True
            best, best_at = math.inf, -1
            for at, col in enumerate(free):
                through = reached + cost[row][col] - u[row] - v[col]
                if through < dist[col]:
                    path[col] = row
                    dist[col] = through
                if dist[col] < best or (dist[col] == best and row_of_col[col] == -1):
                    best, best_at = dist[col], at
            if best == math.inf:
                raise ValueError("cost matrix is infeasible")
            reached = best
            col = free[best_at]
            cols_seen[col] = True
            free[best_at] = free[-1]
            free.pop()
            if row_of_col[col] == -1:
                sink = col
            else:
                row = row_of_col[col]
        # Dual update, then flip the augmenting path.
        u[start] += reached
        for r in range(num_rows):
            if rows_seen[r] and r != start:
                u[r] += reached - dist[col_of_row[r]]
        for col in range(num_cols):
            if cols_seen[col]:
                v[col] -= reached - dist[col]
        col = sink
        while True:
            row = path[col]
            row_of_col[col] = row
            col, col_of_row[row] = col_of_row[row], col
            if row == start:
                break
    return col_of_row
