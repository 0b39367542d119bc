"""Test statistics of the EXP and ITS watermarks: cyclic-shift sums and one semi-global alignment.

Both statistics take a cost tensor ``cost[b, i, j]``: the cost of aligning text token
``i`` with key position ``j`` under key ``b`` (the observed key and the resampled keys
of a permutation test share one batch). Convention: LOWER cost and LOWER statistic mean
MORE watermarked.

Why one DP on a ring instead of one DP per shift: the reference implementation aligns a
k-token window against every one of the n cyclic shifts of the key, O(n k^2) per key. Here
the text (rows ``i = 0..m``) is aligned once against the key as a ring of ``n`` positions: a
path may start at any key position (free start), ends anywhere (free end), and wraps around
the key as generation does when a text is longer than the key. With ``A_i[j]`` the best cost
of aligning the first ``i`` tokens so that the next key position is ``j`` (indices mod n):

    A_0[j] = 0,
    A_i[j] = min(A_{i-1}[j] + gamma,                # text token i-1 skipped (inserted)
                 A_i[j-1] + gamma,                  # key position j-1 skipped (token deleted)
                 A_{i-1}[j-1] + cost[i-1, j-1])     # token i-1 aligned with key position j-1
    statistic = min_j A_m[j]

O(m n) for every shift at once. The in-row dependency (deletions) is solved without a Python
loop: with ``B`` the first and third terms, the linear scan ``L[j] = j*gamma + cummin_{l <= j}
(B[l] - l*gamma)`` covers deletions that do not wrap, and ``A[j] = min(L[j], L[n-1] + (j+1)*gamma)``
adds those that do (going once round the ring only adds ``n * gamma``, so one wrap suffices).

An earlier version aligned against the key unrolled to ``n + m - 1`` positions: O(m (n + m)),
20 s per 3,000-token text with 100 resamples, and a path starting near the key's end could
not skip more key positions than the unrolled tail held, so a text generated from a late
shift lost part of its alignment after deletions. The ring has neither problem.

Everything is vectorised over the batch; the only Python loop is over the m text rows,
and the plain statistic is accumulated in the same loop (row ``i`` adds its costs rolled
by ``i`` to the per-shift sums), so no ``(B, m, n)`` temporary is ever built.

Costs may be given per unique token: ``cost`` of shape ``(B, R, n)`` with ``rows`` mapping
text position ``i`` to cost row ``rows[i]`` (or ``rows[b, i]``); without ``rows``, ``R = m``.
``lengths`` (one per batch row) lets texts of different lengths share a batch: positions
``i >= lengths[b]`` are ignored and every statistic equals that row's statistic alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

CPU_SERIAL_ELEMENTS = 32768
"""On the CPU the DP runs in batch chunks of at most this many cells per row.

It is torch's parallel grain size (``at::internal::GRAIN_SIZE``): smaller element-wise ops
run on one thread. The DP issues ~10 small ops per text row; multi-threaded, each op pays a
thread barrier, and on a machine whose cores are busy with other processes a descheduled
worker makes every barrier wait a time slice (measured: 0.15 s single-threaded vs 4-12 s
with two threads on two loaded cores for 101 keys x 200 tokens). Chunks stay fast either way.
"""


class Statistics(NamedTuple):
    plain: torch.Tensor  # (B,) min over cyclic shifts of the summed costs
    best_shift: torch.Tensor  # (B,) the minimising shift
    edit: torch.Tensor | None  # (B,) semi-global alignment statistic, if gamma was given


def _prepare(
    cost: torch.Tensor, rows: torch.Tensor | None, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if cost.dim() != 3:
        raise ValueError("cost must have shape (batch, rows, key_length)")
    batch, n_rows, _ = cost.shape
    device = cost.device
    if rows is None:
        rows = torch.arange(n_rows, device=device)
    rows = torch.as_tensor(rows, dtype=torch.long, device=device)
    if rows.dim() == 1:
        rows = rows.expand(batch, -1)
    if rows.dim() != 2 or rows.shape[0] != batch or rows.shape[1] < 1:
        raise ValueError("rows must have shape (m,) or (batch, m) with m >= 1")
    if int(rows.min()) < 0 or int(rows.max()) >= n_rows:
        raise ValueError("rows must index the cost rows")
    m = rows.shape[1]
    if lengths is None:
        lengths = torch.full((batch,), m, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if lengths.shape != (batch,) or int(lengths.min()) < 1 or int(lengths.max()) > m:
        raise ValueError("lengths must hold one length in [1, m] per batch row")
    return rows, lengths


def alignment_statistics(
    cost: torch.Tensor,
    gamma: float | None = None,
    rows: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> Statistics:
    """The plain statistic (always) and the edit statistic (when ``gamma`` is given) in one pass.

    ``gamma`` must be positive: with ``gamma = 0`` a free-end alignment could skip key
    positions at no cost and pick the best key entry for every token.
    """
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    rows, lengths = _prepare(cost, rows, lengths)
    batch = rows.shape[0]
    shared = rows[0].tolist() if bool((rows == rows[:1]).all()) else None
    ends = set(lengths.tolist())  # host-side, so the row loop never waits on the device
    chunk = max(1, CPU_SERIAL_ELEMENTS // cost.shape[2])
    if cost.device.type != "cpu" or batch <= chunk:
        shift_sums, edit = _run(cost, gamma, rows, lengths, shared, ends)
    else:
        parts = []
        for s in range(0, batch, chunk):
            part_lengths = lengths[s : s + chunk]
            part_ends = ends if len(ends) == 1 else set(part_lengths.tolist())
            parts.append(_run(cost[s : s + chunk], gamma, rows[s : s + chunk], part_lengths, shared, part_ends))
        shift_sums = torch.cat([p[0] for p in parts])
        edit = None if gamma is None else torch.cat([p[1] for p in parts])
    # one reduction over the whole batch: per-chunk min-with-index reductions were measured
    # at ~10 ms each with two threads on loaded cores
    plain, best_shift = shift_sums.min(dim=1)
    return Statistics(plain, best_shift, edit)


def _run(
    cost: torch.Tensor,
    gamma: float | None,
    rows: torch.Tensor,
    lengths: torch.Tensor,
    shared: list[int] | None,
    ends: set[int],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The row loop of :func:`alignment_statistics` on validated inputs: ``(shift sums (B, n), edit)``."""
    batch, n_rows, n = cost.shape
    m = rows.shape[1]
    device, dtype = cost.device, cost.dtype
    if shared is None:  # row lookups as index_select on a flat view (fast on every device)
        flat_cost = cost.reshape(batch * n_rows, n)
        flat_rows = rows + (torch.arange(batch, device=device) * n_rows)[:, None]
    uniform_length = ends == {m}
    twice_round = torch.arange(2 * n, device=device) % n  # [start, start + n): the ring rolled by start
    shift_sums = torch.zeros(batch, n, device=device, dtype=dtype)
    if gamma is not None:
        ramp = torch.arange(n, device=device, dtype=dtype) * gamma  # j * gamma
        wrap_ramp = ramp + gamma  # (j + 1) * gamma
        previous = torch.zeros(batch, n, device=device, dtype=dtype)  # A_0[j] = 0
        candidate = torch.empty_like(previous)
        scan_values = torch.empty_like(previous)  # preallocated: cummin allocations dominated on the CPU
        scan_indices = torch.empty(previous.shape, dtype=torch.long, device=device)
        best = torch.full((batch,), float("inf"), device=device, dtype=dtype)
    for i in range(1, m + 1):
        if shared is not None:
            row_cost = cost[:, shared[i - 1], :]  # (B, n)
        else:
            row_cost = flat_cost.index_select(0, flat_rows[:, i - 1])
        start = (i - 1) % n
        rolled = row_cost.index_select(1, twice_round[start : start + n])  # rolled[s] = cost[(s + i - 1) mod n]
        if uniform_length:
            shift_sums += rolled
        else:
            shift_sums += rolled * (lengths >= i).to(dtype)[:, None]
        if gamma is None:
            continue
        # B[j] = min(A[j] + gamma, A[j - 1] + cost[j - 1]), j - 1 taken round the ring
        torch.minimum(previous[:, 1:] + gamma, previous[:, :-1] + row_cost[:, :-1], out=candidate[:, 1:])
        torch.minimum(previous[:, :1] + gamma, previous[:, -1:] + row_cost[:, -1:], out=candidate[:, :1])
        candidate -= ramp
        torch.cummin(candidate, dim=1, out=(scan_values, scan_indices))
        scan_values += ramp  # L: deletions that do not wrap
        previous = torch.minimum(scan_values, scan_values[:, -1:] + wrap_ramp)  # and those that do
        if not uniform_length and i in ends:
            finished = lengths == i
            best[finished] = previous[finished].amin(dim=1)
    if gamma is None:
        return shift_sums, None
    return shift_sums, (previous.amin(dim=1) if uniform_length else best)


def plain_statistic(
    cost: torch.Tensor, lengths: torch.Tensor | None = None, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(statistic (B,), best_shift (B,))``: ``min_s sum_{i < len_b} cost[b, row_i, (s + i) mod n]``."""
    stats = alignment_statistics(cost, None, rows, lengths)
    return stats.plain, stats.best_shift


def edit_statistic(
    cost: torch.Tensor, gamma: float, lengths: torch.Tensor | None = None, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """The semi-global alignment statistic ``min_j A[m][j]`` (see the module docstring), ``(B,)``.

    With ``lengths`` each row's statistic is read off at its own last row ``A[len_b]`` and
    over columns ``j <= n + len_b - 1``, so it equals the statistic of that row alone.
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    return alignment_statistics(cost, gamma, rows, lengths).edit
