"""Rebuild human_passages.jsonl from the Jargon File 4.4.7 (public domain; Debian package jargon-text).

Usage: apt-get download jargon-text && dpkg -x jargon-text_*.deb x &&
       python tests/data/make_human_passages.py x/usr/share/doc/jargon-text/jargon.txt.gz
Keeps prose paragraphs (at least 25 words, mostly letters), joins consecutive ones into
passages of 180-260 words, and writes the first 600 passages, one JSON string a line.
"""

import gzip
import json
import re
import sys
from pathlib import Path


def paragraphs(text: str):
    for block in re.split(r"\n\s*\n", text):
        words = block.split()
        letters = sum(ch.isalpha() for ch in block)
        if len(words) >= 25 and letters > 0.7 * len(block.replace(" ", "").replace("\n", "")):
            yield " ".join(words)


def passages(paras, low=180, high=260):
    current: list[str] = []
    for para in paras:
        current.extend(para.split())
        if len(current) >= low:
            yield " ".join(current[:high])
            current = []


if __name__ == "__main__":
    source = gzip.open(sys.argv[1], "rt", encoding="utf-8").read()
    out = Path(__file__).with_name("human_passages.jsonl")
    chosen = list(passages(paragraphs(source)))[:600]
    out.write_text("".join(json.dumps(p) + "\n" for p in chosen), encoding="utf-8")
    print(f"wrote {len(chosen)} passages to {out}")
