"""SynthID-Text (``text_wm.synthid``): g-values and masks as transformers computes them, an exact null,
and texts from transformers' own ``generate(watermarking_config=...)`` detected by our CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats as sps

import cli
from provenance.stats import lattice_sum_tail
from text_wm.synthid import SynthIDKey, SynthIDText, g_values, scored_g_values

KEY = SynthIDKey(keys=tuple(range(101, 131)), ngram_len=5)
WRONG = SynthIDKey(keys=tuple(range(201, 231)), ngram_len=5)
SMALL = SynthIDKey(keys=(7, -3, 11), ngram_len=3, context_history_size=8, sampling_table_size=1000,
                   sampling_table_seed=4)


def processor_of(key: SynthIDKey):
    return key.transformers_config().construct_processor(vocab_size=0, device=torch.device("cpu"))


@pytest.mark.parametrize("key", [KEY, SMALL], ids=["default-table", "small-table-short-history"])
def test_g_values_and_the_context_mask_are_transformers_own(key):
    ids = torch.randint(0, 49152, (1, 400), generator=torch.Generator().manual_seed(0))
    ids[0, 200:240] = ids[0, 20:60]  # a repeated passage: repeated contexts, inside and beyond the history
    ids[0, 300:304] = ids[0, 296:300]
    processor = processor_of(key)
    assert torch.equal(g_values(ids[0], key), processor.compute_g_values(ids)[0])
    values = scored_g_values(ids[0], key)
    theirs = processor.compute_context_repetition_mask(ids)[0].bool().numpy()
    assert values.masked_context == int((~theirs).sum()) > 0
    assert not values.mask[~theirs].any()  # ours masks every position theirs does
    assert values.masked_ngram == int((theirs & ~values.mask).sum())  # and beyond: n-grams seen before the window
    assert (values.masked_ngram > 0) == (key is SMALL)


def test_the_end_of_sequence_masks_the_rest_as_transformers_does():
    ids = torch.randint(0, 49152, (1, 60), generator=torch.Generator().manual_seed(1))
    ids[0, 40] = 2
    processor = processor_of(KEY)
    theirs = processor.compute_eos_token_mask(ids, 2)[0, KEY.ngram_len - 1:].bool().numpy()
    assert np.array_equal(scored_g_values(ids[0], KEY, eos_token_id=2).mask & theirs,
                          scored_g_values(ids[0], KEY, eos_token_id=2).mask)
    assert not scored_g_values(ids[0], KEY, eos_token_id=2).mask[~theirs].any()


def test_the_lattice_tail_is_the_binomial_tail_deep_down():
    for count, observed in ((100, 60), (200, 150), (1000, 700)):
        assert lattice_sum_tail([0.5, 0.5], count, observed) == pytest.approx(sps.binom.sf(observed - 1, count, 0.5),
                                                                               rel=1e-9)
    three = sps.binom.pmf(np.arange(4), 3, 0.5)
    assert lattice_sum_tail(three, 200, 500) == pytest.approx(sps.binom.sf(499, 600, 0.5), rel=1e-9)


def test_random_texts_are_flagged_at_the_nominal_rate():
    """250 random token sequences of 80 tokens (no watermark): rejections at 5% and 1% within the
    binomial band, for both table kinds."""
    scheme = SynthIDText()
    generator = torch.Generator().manual_seed(2)
    for key in (KEY, SMALL):
        texts = [torch.randint(0, 49152, (80,), generator=generator) for _ in range(250)]
        p = np.array([r.p_value for r in scheme.detect_batch(texts, key, fpr=0.05)])
        for level in (0.05, 0.01):
            assert np.sum(p <= level) <= sps.binom.ppf(0.999, len(p), level), (key.key_id, level)
        assert np.mean(p <= 0.5) > 0.2  # the test is not simply conservative


@pytest.fixture(scope="module")
def generations(text_model):
    """Two 100-token continuations from plain transformers code with the config, and two without."""
    model, tokenizer = text_model
    prompts = ["Write a short story about a lighthouse keeper.", "Explain how bees make honey."]
    chat = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    batch = tokenizer(chat, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    made = {}
    for name, options in (("marked", {"watermarking_config": KEY.transformers_config()}), ("plain", {})):
        torch.manual_seed(3)
        out = model.generate(**batch, do_sample=True, max_new_tokens=100, top_k=0, pad_token_id=tokenizer.eos_token_id,
                                  **options)
        made[name] = [tokenizer.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]
    return made


def test_text_from_transformers_generate_is_detected_by_the_cli(generations, tokenizer, tmp_path):
    """At 1e-4 (a platform's level): both watermarked texts found, neither plain one, none under another config."""
    config = tmp_path / "synthid.json"
    KEY.save(config)
    files = []
    for name, texts in generations.items():
        for i, text in enumerate(texts):
            files.append(tmp_path / f"{name}{i}.txt")
            files[-1].write_text(text)
    result = CliRunner().invoke(cli.main, ["text", "detect", "--scheme", "synthid", "--synthid-config", str(config),
                                           "--fpr", "1e-4", "--json", *map(str, files)])
    assert result.exit_code == 0, result.output
    verdicts = {row["input"].rsplit("/", 1)[-1]: row for row in map(json.loads, result.output.splitlines())}
    for i in range(2):
        assert verdicts[f"marked{i}.txt"]["detected"] and verdicts[f"marked{i}.txt"]["p_value"] < 1e-6, verdicts
        assert not verdicts[f"plain{i}.txt"]["detected"]
        assert str(KEY.keys[0]) not in result.output
    assert not any(r.detected for r in SynthIDText().detect_batch(generations["marked"], WRONG, tokenizer, fpr=1e-4))


def test_config_files_are_checked_and_never_echoed(tmp_path):
    made = CliRunner().invoke(cli.main, ["text", "synthid-config", "--out", str(tmp_path / "c.json"), "--depth", "4"])
    assert made.exit_code == 0, made.output
    key = SynthIDKey.load(tmp_path / "c.json")
    assert key.depth == 4 and oct((tmp_path / "c.json").stat().st_mode)[-3:] == "600"
    assert str(key.keys[0]) not in made.output and str(key.keys[0]) not in repr(key)
    again = CliRunner().invoke(cli.main, ["text", "synthid-config", "--out", str(tmp_path / "c.json")])
    assert again.exit_code == 2 and again.output.startswith("error:")
    text = tmp_path / "t.txt"
    text.write_text("Some words to test, long enough for a few five-grams of tokens at least.")
    bad = {"unknown": {**key.to_dict(), "secret_sauce": 1}, "debug": {**key.to_dict(), "debug_mode": True},
           "keys": {**key.to_dict(), "keys": ["a", 1]}, "table": {**key.to_dict(), "sampling_table_size": 1 << 30},
           "list": [1, 2]}
    for name, content in bad.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        result = CliRunner().invoke(cli.main, ["text", "detect", "--scheme", "synthid", "--synthid-config", str(path),
                                               str(text)])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error:"), name
        assert str(key.keys[0]) not in result.output
    for args in (["--key", str(tmp_path / "c.json")], ["--synthid-config", str(tmp_path / "c.json"), "--key", "k"]):
        result = CliRunner().invoke(cli.main, ["text", "detect", "--scheme", "synthid", *args, str(text)])
        assert result.exit_code == 2 and "--synthid-config" in result.output
