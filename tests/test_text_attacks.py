"""Text attacks: deterministic under their seed, rates and fractions respected, paraphrase on topic,
and a token watermark weakening as the substitution rate rises."""

import difflib

import numpy as np
import pytest

import attacks
from attacks.text import paraphrase_texts
from provenance.embeddings import sentence_embeddings
from provenance.keys import WatermarkKey
from text_wm.generate import generate_watermarked
from text_wm.registry import get_scheme

TEXT_ATTACKS = ("token-substitution", "token-insertion", "token-deletion", "word-deletion", "copy-paste", "paraphrase")
CHEAP = TEXT_ATTACKS[:-1]


@pytest.fixture(scope="module")
def passage(human_passages):
    return human_passages[7]


def token_ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_registered_with_ranges():
    assert set(TEXT_ATTACKS) <= set(attacks.names("text"))
    assert attacks.get("copy-paste").stronger == "down"
    with pytest.raises(ValueError, match="outside"):
        attacks.get("token-deletion")("some text", strength=1.5)


@pytest.mark.parametrize("name", CHEAP)
def test_deterministic_under_seed_and_refuses_empty_text(name, passage, tokenizer):
    attack = attacks.get(name)
    first = attack(passage, strength=0.3, seed=1, tokenizer=tokenizer)
    assert first == attack(passage, strength=0.3, seed=1, tokenizer=tokenizer)
    assert first != attack(passage, strength=0.3, seed=2, tokenizer=tokenizer)
    assert first != passage
    with pytest.raises(ValueError, match="empty"):
        attack("  ", strength=0.3, tokenizer=tokenizer)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_token_and_word_rates(rate, passage, tokenizer):
    n = len(token_ids(tokenizer, passage))
    deleted = len(token_ids(tokenizer, attacks.get("token-deletion")(passage, rate, tokenizer=tokenizer)))
    inserted = len(token_ids(tokenizer, attacks.get("token-insertion")(passage, rate, tokenizer=tokenizer)))
    substituted = token_ids(tokenizer, attacks.get("token-substitution")(passage, rate, tokenizer=tokenizer))
    kept = sum(b.size for b in difflib.SequenceMatcher(None, token_ids(tokenizer, passage), substituted,
                                                       autojunk=False).get_matching_blocks())
    words = len(passage.split())
    remaining = len(attacks.get("word-deletion")(passage, rate).split())
    # a random token re-tokenizes to one or a few tokens, hence the wider upper band for insertion
    assert abs(deleted / n - (1 - rate)) < 0.07
    assert 1 + 0.7 * rate < inserted / n < 1 + 2.0 * rate
    assert abs(kept / n - (1 - rate)) < 0.07
    assert abs(remaining / words - (1 - rate)) < 0.07


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5, 1.0])
def test_copy_paste_fraction(fraction, passage, human_passages):
    span = " ".join(passage.split()[:60])
    attacked = attacks.get("copy-paste")(span, fraction, seed=3, human_text=human_passages[100:103])
    assert span in attacked
    assert abs(60 / len(attacked.split()) - fraction) < 0.01
    assert attacks.get("copy-paste")(span, 0.2, seed=0) != attacks.get("copy-paste")(span, 0.2, seed=1)


def test_paraphrase_of_no_sentence_leaves_the_text(text_model, passage):
    model, tokenizer = text_model  # the passages are single-spaced, so re-joining sentences is the identity
    assert paraphrase_texts([passage], 0.0, model=model, tokenizer=tokenizer) == [passage]


@pytest.mark.slow
def test_paraphrase_rewrites_but_stays_on_topic(text_model, human_passages):
    model, tokenizer = text_model
    originals = [" ".join(p.split()[:45]) for p in human_passages[200:202]]
    attacked = paraphrase_texts(originals, 1.0, seed=0, model=model, tokenizer=tokenizer)
    again = paraphrase_texts(originals, 1.0, seed=0, model=model, tokenizer=tokenizer)
    assert attacked == again
    similarity = (sentence_embeddings(originals) * sentence_embeddings(attacked)).sum(-1).numpy()
    unrelated = (sentence_embeddings(originals) * sentence_embeddings(attacked[1:] + attacked[:1])).sum(-1).numpy()
    overlap = [len(set(a.lower().split()) & set(o.lower().split())) / len(set(o.lower().split()))
               for a, o in zip(attacked, originals)]
    print(f"\nparaphrase MiniLM similarity {similarity.round(2)}, to another text {unrelated.round(2)}, "
          f"word overlap {np.round(overlap, 2)}\n" + "\n".join(attacked))
    assert all(a != o for a, o in zip(attacked, originals))
    assert np.all(similarity > unrelated) and similarity.mean() > 0.5


@pytest.mark.slow
def test_kgw_weakens_as_token_substitution_rises(text_model):
    model, tokenizer = text_model
    key, kgw = WatermarkKey.from_seed(5), get_scheme("kgw")
    records = generate_watermarked(model, tokenizer, ["Explain how rain forms.", "Describe a busy harbour."], kgw,
                                   key, chat=True, seed=0, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                   min_new_tokens=150, max_new_tokens=150)
    rates = [0.0, 0.2, 0.4, 0.7]
    z = [np.mean([kgw.detect(attacks.get("token-substitution")(r.text, rate, seed=s, tokenizer=tokenizer), key,
                             tokenizer).score for r in records for s in range(3)]) for rate in rates]
    print(f"\nKGW mean z against token-substitution rate {dict(zip(rates, np.round(z, 2)))}")
    assert all(a > b for a, b in zip(z, z[1:]))
    assert z[0] > 4 and z[-1] < z[0] / 2


def test_synonym_substitution_replaces_words_in_place_and_weakens_the_blackbox_mark(text_model, human_passages):
    from text_wm.blackbox import BlackBoxWatermark
    from text_wm.synonyms import SynonymProposer

    text = " ".join(human_passages[:2])
    attack = attacks.get("synonym-substitution")
    out = attack(text, 0.5, seed=1, model=text_model[0], tokenizer=text_model[1])
    assert out == attack(text, 0.5, seed=1, model=text_model[0], tokenizer=text_model[1])
    before, after = text.split(), out.split()
    changed = sum(a != b for a, b in zip(before, after))
    assert len(after) == len(before) and changed >= 10  # word for word, a real share replaced
    assert attack(text, 0.0, seed=1) == text
    key = WatermarkKey.from_seed("synonym-attack")
    scheme = BlackBoxWatermark(proposer=SynonymProposer(*text_model))
    marked = scheme.watermark(text, key).text
    attacked = attack(marked, 1.0, seed=2, model=text_model[0], tokenizer=text_model[1])
    assert scheme.detect(attacked, key).p_value > scheme.detect(marked, key).p_value
