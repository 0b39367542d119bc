"""Random token edits: substitution, insertion and deletion at a given rate.

Why token-level: it is the attack model of Kuditipudi et al. (random corruption of a
fraction of tokens), the standard yardstick for edit robustness of token watermarks. The
function is pure and deterministic under its generator.
"""

from __future__ import annotations

import torch


def random_token_edits(
    tokens: torch.Tensor, rate: float, vocab_size: int, generator: torch.Generator, kinds: str = "sid"
) -> torch.Tensor:
    """Edit about ``rate`` of the positions, each edit a substitution, insertion or deletion.

    ``kinds`` selects the edit types (``"s"``, ``"i"``, ``"d"`` or any mix, chosen
    uniformly per edited position). Inserted and substituted tokens are uniform over the
    vocabulary. Returns a new 1-D tensor (the length changes with insertions/deletions).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError("edit rate must lie in [0, 1]")
    tokens = torch.as_tensor(tokens, dtype=torch.long).cpu()
    n = tokens.numel()
    edited = torch.rand(n, generator=generator) < rate
    kind = torch.randint(len(kinds), (n,), generator=generator)
    random_ids = torch.randint(vocab_size, (n,), generator=generator)
    codes = torch.tensor([ord(c) for c in kinds])[kind]
    substitute = edited & (codes == ord("s"))
    insert = edited & (codes == ord("i"))
    delete = edited & (codes == ord("d"))
    out = torch.where(substitute, random_ids, tokens)
    # each position emits: [inserted token]? then its own token unless deleted
    emit_insert = insert
    emit_self = ~delete
    stacked = torch.stack([random_ids, out], dim=1)
    mask = torch.stack([emit_insert, emit_self], dim=1)
    return stacked[mask]
