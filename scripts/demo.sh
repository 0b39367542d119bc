#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: every step is a real `provenance` command.
set -euo pipefail
OUT=demo-output
rm -rf "$OUT" && mkdir -p "$OUT"
say() { printf '\n== %s\n' "$*"; }

say "1. What this machine has: compute device and the default models (all local, no downloads)"
provenance info

say "2. A secret watermark key. The file holds the secret (mode 0600); only its public id is ever shown"
provenance keys new --out "$OUT/key.json" --label demo
provenance keys show "$OUT/key.json"
provenance keys new --out "$OUT/other-key.json" --label "someone else" >/dev/null

say "3. Text: SmolLM2 writes a paragraph with a KGW watermark in its token choices"
provenance text generate --key "$OUT/key.json" --scheme kgw --seed 1 --max-new-tokens 200 \
  --prompt "Write a short story about a lighthouse keeper." --out "$OUT/kgw.jsonl"
python -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['text'][:600], '...')" "$OUT/kgw.jsonl"

say "4. Detection with the right key: a tiny p-value means 'watermarked'"
provenance text detect --key "$OUT/key.json" --scheme kgw "$OUT/kgw.jsonl"

say "5. The same text under someone else's key, and human-written text: no detection"
provenance text detect --key "$OUT/other-key.json" --scheme kgw "$OUT/kgw.jsonl"
python -c "import json; print(json.loads(open('tests/data/human_passages.jsonl').readline()))" > "$OUT/human.txt"
provenance text detect --key "$OUT/key.json" --scheme kgw "$OUT/human.txt"

say "6. A paraphrase-like edit: 20% of the words replaced by other words; the watermark still detects"
python - "$OUT/kgw.jsonl" "$OUT/edited.txt" <<'PY'
import json, random, sys
words = json.loads(open(sys.argv[1]).readline())["text"].split()
rng = random.Random(0)
fillers = "the a of and very quite some this that river house small bright old new".split()
for i in rng.sample(range(len(words)), k=len(words) // 5):
    words[i] = rng.choice(fillers)
open(sys.argv[2], "w").write(" ".join(words))
PY
provenance text detect --key "$OUT/key.json" --scheme kgw "$OUT/edited.txt"

say "7. A multi-bit watermark: MajorMark carries a 16-bit payload (0xbeef), protected by Reed-Solomon"
provenance text generate --key "$OUT/key.json" --scheme majormark --payload beef --seed 2 --max-new-tokens 200 \
  --prompt "Explain how bees make honey." --out "$OUT/majormark.jsonl"
provenance text detect --key "$OUT/key.json" --scheme majormark "$OUT/majormark.jsonl"

say "8. Distortion-free EXP watermark (Kuditipudi et al.), detected by edit-robust alignment"
provenance text generate --key "$OUT/key.json" --scheme exp --seed 3 --max-new-tokens 120 \
  --prompt "Describe a walk through a forest in autumn." --out "$OUT/exp.jsonl"
provenance text detect --key "$OUT/key.json" --scheme exp "$OUT/exp.jsonl"
provenance text detect --key "$OUT/other-key.json" --scheme exp "$OUT/exp.jsonl"
say "8b. At a platform's false-positive rate, 1e-6: the exact analytic tail takes EXP below the permutation floor"
provenance text detect --key "$OUT/key.json" --scheme exp --fpr 1e-6 "$OUT/exp.jsonl"

say "9. Images: the watermark lives in the initial noise of the reference text-to-image model (64x64, CPU)."
say "   A 64x64 image carries little evidence for some schemes (Tree-Ring's rings), so single images are tested at a 1% FPR here (the CLI default is 1e-6)"
PROMPT="a small red star above a large blue ring on a striped green background"
python - "$OUT/plain.png" "$PROMPT" <<'PY'
# The unwatermarked twin: same prompt, same seed (7), plain N(0, I) initial noise.
import sys
from image_wm.image_io import write_image
from image_wm.loading import load_model
from provenance.keys import WatermarkKey
wp = load_model().watermarked("prc", WatermarkKey.generate())  # the reference model, at its guidance (2.0)
write_image(sys.argv[1], wp.run_pipeline([sys.argv[2]], wp.plain_latents([7]), 25, wp.guidance)[0])
PY
for scheme in tree-ring gaussian-shading prc seal; do
  payload=()
  case "$scheme" in gaussian-shading|prc) payload=(--payload beef) ;; esac
  say "9.$scheme: generate (payload: ${payload[*]:-none}), then test it, its unwatermarked twin, and it under another key at a 1% FPR"
  provenance image generate --key "$OUT/key.json" --scheme "$scheme" --prompt "$PROMPT" --seed 7 "${payload[@]}" \
    --out "$OUT/$scheme.png"
  provenance image detect --key "$OUT/key.json" --scheme "$scheme" --fpr 0.01 "$OUT/$scheme.png" "$OUT/plain.png"
  provenance image detect --key "$OUT/other-key.json" --scheme "$scheme" --fpr 0.01 "$OUT/$scheme.png"
done

say "9b. Content Credentials (C2PA): the PRC image signed with a development certificate; its manifest names the watermark"
provenance keys dev-cert --out "$OUT/certs"
provenance image sign --key "$OUT/key.json" --scheme prc --fpr 0.01 --cert "$OUT/certs/chain.pem" \
  --private-key "$OUT/certs/signer-key.pem" --out "$OUT/prc-signed.png" "$OUT/prc.png"
say "9c. Verified: the signed copy (manifest and watermark agree), and the unsigned original (no manifest; its watermark gives the soft binding back)"
provenance image verify --key "$OUT/key.json" --scheme prc --fpr 0.01 --trust-anchors "$OUT/certs/ca.pem" \
  "$OUT/prc-signed.png" "$OUT/prc.png"

say "10. Video: VideoMark puts one PRC codeword per frame into the reference text-to-video model's noise"
provenance video generate --key "$OUT/key.json" --prompt "a small red circle moving right on a plain white background" \
  --frames 8 --seed 3 --out "$OUT/clip.mp4"
provenance video detect --key "$OUT/key.json" "$OUT/clip.mp4"
say "10b. Temporal attacks: the clip reversed, then a frame dropped; the detector still finds it and recovers the order"
provenance attack video --name reverse "$OUT/clip.mp4" --out "$OUT/reversed.mp4"
provenance video detect --key "$OUT/key.json" "$OUT/reversed.mp4"
provenance attack video --name frame-drop --strength 0.125 "$OUT/clip.mp4" --out "$OUT/dropped.mp4"
provenance video detect --key "$OUT/key.json" "$OUT/dropped.mp4"
provenance video detect --key "$OUT/other-key.json" "$OUT/clip.mp4"

say "11. Attacks: JPEG at quality 50 on the Gaussian Shading image, then a small robustness audit with an HTML report"
provenance attack image --name jpeg --strength 50 "$OUT/gaussian-shading.png" --out "$OUT/gs-jpeg50.png"
provenance image detect --key "$OUT/key.json" --scheme gaussian-shading --fpr 0.01 "$OUT/gs-jpeg50.png"
provenance audit --modality image --schemes gaussian-shading,dwtdctsvd --attacks jpeg,crop --levels 3 --n 4 \
  --steps 10 --fpr 0.01 --key "$OUT/key.json" --out "$OUT/audit"

say "12. Text from any source: the black-box synonym watermark marks human text after the fact (no sampler needed)"
python -c "import json; r=[json.loads(l) for l in open('tests/data/human_passages.jsonl')][10:12]; print(' '.join(r))" \
  > "$OUT/passage.txt"
provenance text watermark --scheme blackbox --key "$OUT/key.json" "$OUT/passage.txt" --out "$OUT/passage-marked.txt"
say "12b. Tested at a 0.1% FPR: the marked passage, the original, and the marked passage under another key"
provenance text detect --scheme blackbox --fpr 0.001 --key "$OUT/key.json" "$OUT/passage-marked.txt" "$OUT/passage.txt"
provenance text detect --scheme blackbox --fpr 0.001 --key "$OUT/other-key.json" "$OUT/passage-marked.txt"

say "13. Zero-shot: does SmolLM2 itself plausibly explain a text? (no watermark, no key; empirical 1% FPR on human text)"
provenance text zeroshot "$OUT/kgw.jsonl" "$OUT/human.txt"

say "14. SynthID-Text as transformers ships it: its config is the key; detection needs no trained detector"
provenance text synthid-config --out "$OUT/synthid.json"
provenance text synthid-config --out "$OUT/other-synthid.json" 2>/dev/null
provenance text generate --scheme synthid --synthid-config "$OUT/synthid.json" --seed 4 --max-new-tokens 60 \
  --prompt "Explain how bees make honey." --out "$OUT/synthid.jsonl"
provenance text detect --scheme synthid --synthid-config "$OUT/synthid.json" "$OUT/synthid.jsonl"
provenance text detect --scheme synthid --synthid-config "$OUT/other-synthid.json" "$OUT/synthid.jsonl"

say "15. Copyright traps: keyed trap sequences, inserted into a corpus (new files, a manifest of every copy)"
python -c "[print(l.strip()) for l in list(open('tests/data/human_passages.jsonl'))[20:24]]" \
  > "$OUT/corpus.jsonl"
provenance traps make --key "$OUT/key.json" --count 4 --length 25 --out "$OUT/traps.jsonl"
provenance traps inject --key "$OUT/key.json" --traps "$OUT/traps.jsonl" --repetitions 3 --fuzzy 3 \
  --out "$OUT/trapped.jsonl" --manifest "$OUT/traps-manifest.json" "$OUT/corpus.jsonl"
echo "(a model fine-tuned on trapped.jsonl is caught by: provenance traps verify --traps $OUT/traps.jsonl --model DIR)"

say "Done. Everything the demo wrote is in $OUT/ (open $OUT/audit/report.html)"
