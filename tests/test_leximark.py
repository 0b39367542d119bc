"""LexiMark: rare-word marking, the Min-K%++ score, and verification after a real fine-tune."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
import torch

from click.testing import CliRunner

import cli
from text_wm.leximark import LexiMark, min_k_plus_plus, verify, zipf
from text_wm.posthoc_cli import dataset
from text_wm.synonyms import SynonymProposer, words

if "dataset" not in cli.main.commands:
    cli.main.add_command(dataset)


def _opening(passage: str, n_words: int = 32) -> str:
    """The passage cut after its ``n_words``-th word (short documents keep fine-tuning cheap)."""
    return passage[: words(passage)[n_words - 1].end]


def test_targets_are_the_rarest_eligible_words_of_each_sentence():
    text = "The cat sat near the ornate balustrade quietly. Dogs bark at the mailman every morning."
    lexi = LexiMark(proposer=SynonymProposer(model=object(), tokenizer=object()), k=1)
    chosen = [words(text)[i].text for i in lexi.targets(text)]
    assert chosen == ["balustrade", "mailman"]
    assert zipf("balustrade") < zipf("ornate") < zipf("quietly")
    with pytest.raises(ValueError, match="empty"):
        lexi.mark("   ")


def test_min_k_plus_plus_matches_its_definition_and_scores_repetition_higher(text_model):
    model, tokenizer = text_model
    text = "Hackers value the freedom to tinker with systems and share what they learn with others."
    other = "A quiet river winds past old mills, where farmers once ground grain for the village."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp**2).sum(-1) - mu**2).sqrt()
    per_token = (logp[torch.arange(len(ids) - 1), ids[1:]] - mu) / sigma
    expected_all = float(per_token.mean())
    expected_min = float(per_token.sort().values[: max(1, int(0.2 * (len(ids) - 1)))].mean())
    scores = min_k_plus_plus(model, tokenizer, [text, other, text + " " + text], k_percent=100)
    assert scores[0] == pytest.approx(expected_all, abs=1e-4)
    assert min_k_plus_plus(model, tokenizer, [text], k_percent=20)[0] == pytest.approx(expected_min, abs=1e-4)
    # the same batch padded next to longer documents scores the same
    assert min_k_plus_plus(model, tokenizer, [text + " " + other, text], k_percent=20)[1] == pytest.approx(expected_min, abs=1e-4)
    # a repeated passage is predictable the second time: a "memorised" document scores higher
    assert scores[2] > scores[0] + 0.2
    with pytest.raises(ValueError):
        min_k_plus_plus(model, tokenizer, [text], k_percent=0)


@pytest.mark.slow
def test_verification_separates_fine_tuned_on_from_held_out_documents(text_model, human_passages):
    model, tokenizer = text_model
    started = time.perf_counter()
    docs = [_opening(p) for p in human_passages[200:216]]
    lexi = LexiMark(SynonymProposer(model, tokenizer, fluency_margin=4.0), k=2)
    marked = lexi.mark_dataset(docs)
    n_changed = sum(len(m.replacements) for m in marked)
    marking_s = time.perf_counter() - started
    texts = [m.text for m in marked]
    members, held_out = texts[:8], texts[8:]
    before = verify(model, tokenizer, members, held_out)

    tuned = copy.deepcopy(model).train()
    torch.manual_seed(0)
    top_layers = ("model.norm", *(f"model.layers.{i}." for i in range(22, 30)))  # the top 8 of 30 layers
    trainable = [p for name, p in tuned.named_parameters() if name.startswith(top_layers)]
    for p in tuned.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(trainable, lr=1e-4)
    batch = tokenizer(members, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(16):
        loss = tuned(**batch, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    tuned.eval()
    after = verify(tuned, tokenizer, members, held_out)
    print(
        f"\nLexiMark: {n_changed} substitutions in 16 docs ({marking_s:.0f} s), map size {len(lexi.replacement_map)}; "
        f"before fine-tuning AUROC={before.auroc:.3f} p={before.p_value:.3g}; after 16 steps "
        f"AUROC={after.auroc:.3f} p={after.p_value:.3g} (final loss {loss.item():.2f}); "
        f"total {time.perf_counter() - started:.0f} s"
    )
    assert n_changed >= 8
    assert before.p_value > 0.01
    assert after.auroc >= 0.9 and after.p_value < 0.01 and after.detected
    assert np.isfinite([after.mean_suspect, after.mean_reference]).all()


@pytest.mark.slow
def test_dataset_cli_marks_consistently_and_verifies(tmp_path, human_passages):
    docs = [_opening(p, 24) for p in human_passages[300:306]]
    source, marked = tmp_path / "docs.jsonl", tmp_path / "marked.jsonl"
    source.write_text("\n".join(json.dumps({"id": i, "text": d}) for i, d in enumerate(docs)) + "\n")
    runner = CliRunner()
    made = runner.invoke(cli.main, ["dataset", "mark", str(source), "--out", str(marked), "--k", "2"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    rows = [json.loads(line) for line in marked.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(6)) and sum(r["text"] != d for r, d in zip(rows, docs)) >= 2
    again = runner.invoke(cli.main, ["dataset", "mark", str(source), "--out", str(marked)], catch_exceptions=False)
    assert again.exit_code == 2 and "--force" in again.output
    suspect, reference = tmp_path / "s.jsonl", tmp_path / "r.jsonl"
    suspect.write_text("\n".join(json.dumps(r["text"]) for r in rows[:3]) + "\n")
    reference.write_text("\n".join(json.dumps(r) for r in rows[3:]) + "\n")
    checked = runner.invoke(cli.main, ["dataset", "verify", "--suspect", str(suspect), "--reference", str(reference), "--json"],
                            catch_exceptions=False)
    assert checked.exit_code == 0, checked.output
    result = json.loads(checked.output.strip().splitlines()[-1])
    assert {"p_value", "auroc", "detected", "n_suspect"} <= set(result) and result["n_suspect"] == 3
