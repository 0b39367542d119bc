"""Black-box synonym watermark benchmark on human text: detection vs length, robustness, quality, speed.

Run: ``.venv/bin/python benchmarks/text_blackbox.py [--n 30] [--slow-n 10] [--threads 2]``.
Texts are human passages (``tests/data/human_passages.jsonl``, the Jargon File): consecutive
passages ``2j, 2j+1`` joined and cut to 300 words, 300 disjoint texts in all. ``n`` of them,
evenly spread over the file, are marked once with one fixed key, and the script reports:
- detection against length: detection rate at p <= 0.01 and p <= 1e-3 and the median p-value
  of the first 50/100/200/300 words of the marked texts, and the empirical FPR of all 300
  unmarked texts at the same lengths (detection is a keyed hash, so the FPR is cheap to measure
  on every text, not only on the ``n`` originals);
- robustness: detection rate at p <= 0.01 after every text attack of ``attacks`` at two
  strengths, and after re-marking the marked text with a second key (does either key detect?);
  the model-heavy steps (paraphrase, synonym substitution, re-marking) run on the first
  ``slow-n`` marked texts only;
- quality: fraction of words changed, MiniLM similarity original vs marked, perplexity of
  original and marked text under SmolLM2-135M-Instruct (the default text LM);
- throughput: marking and detection speed in words per second at ``--threads`` torch threads.
Prints the tables and writes the "Text: black-box synonym watermark" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import attacks  # noqa: E402
from benchmarks.lm_scoring import continuation_nll  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from provenance.keys import WatermarkKey  # noqa: E402
from provenance.models import load_embedder, load_text_model, quiet_libraries  # noqa: E402
from text_wm.blackbox import BlackBoxWatermark, MarkedText  # noqa: E402
from text_wm.synonyms import SynonymProposer, words  # noqa: E402

PASSAGES = Path(__file__).resolve().parents[1] / "tests" / "data" / "human_passages.jsonl"
TEXT_WORDS = 300
LENGTHS = (50, 100, 200, 300)
KEY_SEED, SECOND_KEY_SEED = "text-blackbox-bench", "text-blackbox-bench-remark"
# two strengths per attack, milder first (copy-paste: share of the words that are watermarked)
STRENGTHS = {
    "token-substitution": (0.1, 0.3), "token-insertion": (0.1, 0.3), "token-deletion": (0.1, 0.3),
    "word-deletion": (0.1, 0.3), "synonym-substitution": (0.3, 0.6), "copy-paste": (0.5, 0.25),
    "paraphrase": (0.5, 1.0),
}
# attacks that run a language model per text: measured on the first --slow-n marked texts
SLOW_ATTACKS = frozenset({"paraphrase", "synonym-substitution"})


def human_texts(n_words: int = TEXT_WORDS) -> list[str]:
    """Disjoint texts of ``n_words`` words: passages ``2j`` and ``2j + 1`` joined, then cut.

    Each passage has 180-260 words, so two always reach 300; "words" are the word-like tokens
    of :func:`text_wm.synonyms.words`, the unit the watermark itself counts.
    """
    passages = [json.loads(line) for line in PASSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [prefix(passages[j] + " " + passages[j + 1], n_words) for j in range(0, len(passages) - 1, 2)]


def prefix(text: str, n_words: int) -> str:
    """The first ``n_words`` words of ``text`` with the characters between them (all of it if shorter)."""
    word_list = words(text)
    return text if len(word_list) <= n_words else text[: word_list[n_words - 1].end]


def p_values(scheme: BlackBoxWatermark, key: WatermarkKey, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Detection p-values and distinct eligible words scored per text.

    A text left with no eligible word (the detector refuses it) counts as p = 1, 0 words.
    """
    p, scored = [], []
    for text in texts:
        try:
            result = scheme.detect(text, key)
        except ValueError:
            p.append(1.0)
            scored.append(0)
            continue
        p.append(result.p_value)
        scored.append(result.details["n_scored"])
    return np.array(p), np.array(scored)


@torch.inference_mode()
def perplexities(model, tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Perplexity of each whole text under ``model``: exp of the mean NLL of its tokens after the first.

    No prompt and no special tokens, so original and marked text are scored the same way.
    """
    ids = [torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    sums, counts = continuation_nll(model, [t[:1] for t in ids], [t[1:] for t in ids])
    return np.exp(sums / counts)


def mark_all(scheme: BlackBoxWatermark, key: WatermarkKey, texts: Sequence[str]) -> tuple[list[MarkedText], float]:
    """Mark every text; return the results and the marking speed in words per second."""
    marked, seconds = [], 0.0
    for text in tqdm(texts, desc="marking", leave=False):
        started = time.perf_counter()
        marked.append(scheme.watermark(text, key))
        seconds += time.perf_counter() - started
    return marked, sum(m.n_words for m in marked) / seconds


def detection_speed(scheme: BlackBoxWatermark, key: WatermarkKey, texts: Sequence[str]) -> float:
    """Words per second detected (one pass over ``texts`` after a warm-up call)."""
    scheme.detect(texts[0], key)
    started = time.perf_counter()
    for text in texts:
        scheme.detect(text, key)
    return sum(len(words(t)) for t in texts) / (time.perf_counter() - started)


def length_table(scheme, key, marked: Sequence[str], originals: Sequence[str]) -> str:
    """Detection of marked prefixes and FPR of human prefixes: how much text the test needs."""
    rows = []
    for length in LENGTHS:
        p_marked, n_scored = p_values(scheme, key, [prefix(t, length) for t in marked])
        p_human, _ = p_values(scheme, key, [prefix(t, length) for t in originals])
        rows.append(
            f"| {length} | {n_scored.mean():.0f} | {np.mean(p_marked <= 0.01):.2f} | {np.mean(p_marked <= 1e-3):.2f} | "
            f"{np.median(p_marked):.1e} | {np.mean(p_human <= 0.01):.3f} | {np.mean(p_human <= 1e-3):.3f} |"
        )
        print(rows[-1], flush=True)
    return "\n".join([
        "| words | distinct eligible words (marked, mean) | detected at 0.01 | detected at 1e-3 | median p | "
        "FPR at 0.01 (human) | FPR at 1e-3 (human) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])


def robustness_table(scheme, key, second_key, marked: Sequence[str], slow_n: int,
                     remark: Callable[[str], str]) -> str:
    """Detection at 0.01 after each registered text attack at two strengths, and after re-marking."""
    def row(label: str, strength: str, texts: Sequence[str], with_key: WatermarkKey) -> str:
        p, _ = p_values(scheme, with_key, texts)
        line = f"| {label} | {strength} | {len(texts)} | {np.mean(p <= 0.01):.2f} | {np.median(p):.1e} |"
        print(line, flush=True)
        return line

    rows = [row("none", "-", marked, key), row("none, tested with a second key", "-", marked, second_key)]
    for name in attacks.names("text"):
        attack = attacks.get(name)
        subset = marked[:slow_n] if name in SLOW_ATTACKS else marked
        for strength in STRENGTHS.get(name, (attack.default, attack.strengths(2)[-1])):
            attacked = [attack(text, strength, seed=i) for i, text in enumerate(tqdm(subset, desc=name, leave=False))]
            rows.append(row(name, f"{strength:g}", attacked, key))
    remarked = [remark(text) for text in tqdm(marked[:slow_n], desc="re-marking", leave=False)]
    rows.append(row("re-marked with a second key: first key", "-", remarked, key))
    rows.append(row("re-marked with a second key: second key", "-", remarked, second_key))
    return "\n".join(["| attack | strength | texts | detected at 0.01 | median p |", "|---|---|---|---|---|", *rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30, help="texts of 300 words to mark")
    parser.add_argument("--slow-n", type=int, default=10,
                        help="marked texts for paraphrase, synonym substitution and re-marking (LM passes per text)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the tables without writing docs/benchmarks.md")
    args = parser.parse_args()
    if not 1 <= args.slow_n <= args.n <= 300:
        raise SystemExit("need 1 <= --slow-n <= --n <= 300")
    torch.set_num_threads(args.threads)
    quiet_libraries()
    started = time.perf_counter()
    model, tokenizer = load_text_model(device="cpu")
    scheme = BlackBoxWatermark(SynonymProposer(model, tokenizer, load_embedder(device="cpu")))
    key, second_key = WatermarkKey.from_seed(KEY_SEED), WatermarkKey.from_seed(SECOND_KEY_SEED)

    originals = human_texts()
    chosen = [originals[i] for i in np.linspace(0, len(originals) - 1, args.n).round().astype(int)]
    marked, mark_speed = mark_all(scheme, key, chosen)
    marked_texts = [m.text for m in marked]
    detect_speed = detection_speed(scheme, key, originals)

    table_len = length_table(scheme, key, marked_texts, originals)
    table_robust = robustness_table(scheme, key, second_key, marked_texts, args.slow_n,
                                    lambda text: scheme.watermark(text, second_key).text)
    ppl_original = perplexities(model, tokenizer, chosen)
    ppl_marked = perplexities(model, tokenizer, marked_texts)
    fraction = np.array([m.fraction_changed for m in marked])
    similarity = np.array([m.similarity for m in marked])
    table_quality = "\n".join([
        "| words changed (mean, min-max) | MiniLM similarity (mean / min) | perplexity original | perplexity marked "
        "| perplexity ratio marked/original (mean) |",
        "|---|---|---|---|---|",
        f"| {fraction.mean():.1%} ({fraction.min():.1%}-{fraction.max():.1%}) | {similarity.mean():.3f} / "
        f"{similarity.min():.3f} | {ppl_original.mean():.1f} | {ppl_marked.mean():.1f} | "
        f"{np.mean(ppl_marked / ppl_original):.3f} |",
    ])
    table_speed = "\n".join([
        "| marking words/s | detection words/s |", "|---|---|", f"| {mark_speed:.1f} | {detect_speed:,.0f} |",
    ])
    minutes = (time.perf_counter() - started) / 60
    body = (
        f"`python benchmarks/text_blackbox.py --n {args.n} --slow-n {args.slow_n} --threads {args.threads}` "
        f"({args.threads} torch thread{'s' * (args.threads > 1)}, {minutes:.0f} min). Human text: the Jargon File "
        f"passages of `tests/data/human_passages.jsonl`, two consecutive passages joined and cut to {TEXT_WORDS} "
        f"words ({len(originals)} disjoint texts); {args.n} of them, evenly spread, marked once with "
        f"`BlackBoxWatermark()` (3 candidates, 2 fluency rounds; SmolLM2-135M-Instruct proposes, MiniLM and the LM "
        f"vet) under key `WatermarkKey.from_seed({KEY_SEED!r})`. \"Words\" are the word-like tokens the watermark "
        "counts; the detector scores each distinct eligible word once (exact binomial test).\n\n"
        f"Detection against length (prefixes of the {args.n} marked texts; FPR on all {len(originals)} unmarked "
        "texts, same key and prefixes):\n\n"
        f"{table_len}\n\n"
        f"Robustness: detection at p <= 0.01 of the {args.n} marked {TEXT_WORDS}-word texts after each text attack "
        f"of `attacks` (seed = text index, the attacks' default models). Paraphrase (SmolLM2-135M-Instruct, "
        "sentence by sentence, temperature 0.7), synonym substitution (the same proposer as marking, so an "
        f"attacker who knows the method and has the model) and re-marking run on the first {args.slow_n} texts "
        "only: they cost LM passes per text. copy-paste strength = share of the words that are watermarked (the "
        "marked text inside human text from `attacks/data`). Re-marking: the marked text marked again with "
        f"`from_seed({SECOND_KEY_SEED!r})`, then tested with both keys. \"tested with a second key\" is the "
        "wrong-key control.\n\n"
        f"{table_robust}\n\n"
        f"Quality of the {args.n} marked texts (similarity: `SynonymProposer.similarity_between`, MiniLM cosine "
        "averaged over aligned 120-word chunks; perplexity of the whole text, no prompt, under "
        "SmolLM2-135M-Instruct):\n\n"
        f"{table_quality}\n\n"
        f"Throughput at {args.threads} torch thread{'s' * (args.threads > 1)}: marking over the {args.n} texts "
        f"(models loaded), detection over all {len(originals)} human texts (no model, one keyed hash per distinct "
        "eligible word):\n\n"
        f"{table_speed}\n"
    )
    print(body)
    if not args.no_write:
        write_section("Text: black-box synonym watermark", body)


if __name__ == "__main__":
    main()
