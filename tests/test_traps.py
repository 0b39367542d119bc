"""Copyright traps (``text_wm.traps``): made and placed reproducibly from the key, every copy where the
manifest says, the user's documents otherwise unchanged."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from click.testing import CliRunner

import cli
from provenance.keys import WatermarkKey
from text_wm.traps import MAX_JACCARD, fuzzy_copies, inject, make_traps, verify_traps

KEY = WatermarkKey.from_seed("traps")


@pytest.fixture(scope="module")
def made(text_model):
    model, tokenizer = text_model
    return make_traps(model, tokenizer, KEY, count=3, length=12, batch=8)


def test_traps_are_reproducible_from_the_key_distinct_and_split_evenly(made, text_model):
    model, tokenizer = text_model
    assert make_traps(model, tokenizer, KEY, count=3, length=12, batch=8) == made
    other = make_traps(model, tokenizer, WatermarkKey.from_seed("other traps"), count=3, length=12, batch=8)
    assert {t.token_ids for t in other}.isdisjoint({t.token_ids for t in made})
    assert sum(t.member for t in made) == 3 and len(made) == 6 and all(len(t.token_ids) == 12 for t in made)
    assert len({t.trap_id for t in made}) == 6
    for i, a in enumerate(made):
        for b in made[i + 1:]:
            sa, sb = set(a.token_ids), set(b.token_ids)
            assert len(sa & sb) / len(sa | sb) <= MAX_JACCARD
    for low, high in ((0, 1), (1, 2)):  # buckets follow perplexity
        assert max(t.perplexity for t in made if t.bucket == low) <= min(t.perplexity for t in made if t.bucket == high)


def test_fuzzy_copies_differ_from_the_trap_and_from_each_other(made, text_model):
    model, tokenizer = text_model
    trap = made[0]
    variants = fuzzy_copies(model, tokenizer, trap, 4, 3, KEY)
    assert variants == fuzzy_copies(model, tokenizer, trap, 4, 3, KEY)
    assert trap.text not in variants and len(set(variants)) == 4
    assert fuzzy_copies(model, tokenizer, trap, 2, 0, KEY) == [trap.text] * 2


def test_every_copy_lands_where_the_manifest_says(made):
    documents = ["The first document has several words in it.", "A second,\nlonger one\tfollows here."]
    copies = {t.trap_id: [t.text] * 4 for t in made if t.member}
    trapped, placements = inject(documents, copies, KEY)
    assert inject(documents, copies, KEY) == (trapped, placements)
    assert len(placements) == 12
    texts = {t.trap_id: t.text.strip() for t in made}
    for place in placements:
        assert trapped[place.document][place.offset:].startswith(texts[place.trap_id])
    for original, new, number in zip(documents, trapped, range(2)):
        stripped = new
        for place in sorted((p for p in placements if p.document == number), key=lambda p: -p.offset):
            text = texts[place.trap_id]
            stripped = stripped[:place.offset] + stripped[place.offset + len(text) + 1:]
        assert stripped == original  # nothing else changed


def test_the_cli_makes_and_injects_into_new_files_only(tmp_path, made):
    key_file = tmp_path / "key.json"
    KEY.save(key_file)
    traps_file = tmp_path / "traps.jsonl"
    traps_file.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in made))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "one two three four", "id": 1}) + "\n" + json.dumps("five six seven") + "\n")
    args = ["traps", "inject", "--key", str(key_file), "--traps", str(traps_file), "--repetitions", "2",
            "--out", str(tmp_path / "out.jsonl"), "--manifest", str(tmp_path / "m.json"), str(corpus)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == 1 and isinstance(rows[1], str)
    assert len(json.loads((tmp_path / "m.json").read_text())["placements"]) == 6
    again = CliRunner().invoke(cli.main, args)
    assert again.exit_code == 2 and again.output.startswith("error:") and again.output.count("\n") == 1
    same = ["traps", "inject", "--key", str(key_file), "--traps", str(traps_file), "--out", str(tmp_path / "x.jsonl"),
            "--manifest", str(tmp_path / "x.jsonl"), str(corpus)]
    result = CliRunner().invoke(cli.main, same)
    assert result.exit_code == 2 and re.search("different files", result.output)


def fine_tuned(model, sequences: torch.Tensor, steps: int):
    """A copy of ``model`` trained ``steps`` full-batch AdamW steps on ``sequences`` (the model itself is untouched)."""
    tuned = copy.deepcopy(model).train()
    optimiser = torch.optim.AdamW(tuned.parameters(), lr=1e-4)
    torch.manual_seed(0)
    for _ in range(steps):
        tuned(input_ids=sequences, labels=sequences).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return tuned.eval()


def test_verify_flags_a_model_trained_on_the_members_and_not_one_trained_on_other_text(text_model, human_passages):
    """A tiny run: 8 steps on the 10 member traps (16 tokens each) against 8 steps on 10 human passages."""
    model, tokenizer = text_model
    made = make_traps(model, tokenizer, KEY, count=10, length=16, batch=16)
    members = torch.tensor([t.token_ids for t in made if t.member])
    flagged = verify_traps(fine_tuned(model, members, 8), model, made)
    assert flagged.detected and flagged.p_value < 1e-3 and flagged.auc_ratio > 0.9, flagged.summary()
    other = torch.tensor([tokenizer(p, add_special_tokens=False)["input_ids"][:16] for p in human_passages[:10]])
    clean = verify_traps(fine_tuned(model, other, 8), model, made)
    assert not clean.detected and clean.p_value > 0.05, clean.summary()
