#!/usr/bin/env python3
"""Build the training text of Baton's built-in model from Debian packages.

    apt-get install fortunes dict-gcide dict-jargon dict-devil
    python3 tools/make_tiny_corpus.py OUT.jsonl

Writes one JSON object per line: {"kind": "text", "text": ...} for plain
English (fortunes, dictionary prose) and {"kind": "chat", "user": ...,
"assistant": ...} for question/answer pairs made from dictionary entries
("What does X mean?"). Standard library only; deterministic.
"""

import base64
import gzip
import json
import os
import random
import re
import sys

FORTUNES = "/usr/share/games/fortunes"
DICTD = "/usr/share/dictd"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def fortunes():
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if "." in name or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for piece in f.read().split("\n%\n"):
                piece = piece.strip()
                if 40 <= len(piece) <= 1200:
                    out.append(piece)
    return out


def dictd_entries(name):
    with open(os.path.join(DICTD, name + ".index"), encoding="utf-8", errors="replace") as f:
        index = [line.rstrip("\n").split("\t") for line in f]
    with gzip.open(os.path.join(DICTD, name + ".dict.dz"), "rb") as f:
        data = f.read()
    for row in index:
        if len(row) < 3 or row[0].startswith("00-database") or row[0].startswith("00database"):
            continue
        word = row[0]
        body = data[b64num(row[1]):b64num(row[1]) + b64num(row[2])].decode("utf-8", "replace")
        yield word, body


def clean_definition(word, body):
    """The first sense of an entry as one or two plain sentences."""
    lines = [l.strip() for l in body.split("\n")]
    text = " ".join(l for l in lines[1:] if l)  # first line repeats the headword
    text = re.sub(r"\[[^\]]*\]", "", text)       # etymology and sources
    text = re.sub(r"\{([^}]*)\}", r"\1", text)    # cross-reference braces
    text = re.sub(r"\s+", " ", text).strip()
    m = re.search(r"1\.\s*(.*?)(?:\s2\.\s|$)", text)
    if m:
        text = m.group(1)
    # Drop part-of-speech and pronunciation noise at the start.
    text = re.sub(r"^[^A-Za-z]*(?:\b(?:n|v|a|adv|prep|pron|conj|interj|v\. t|v\. i)\.\s*)+", "", text)
    sentences = re.split(r"(?<=[.;])\s+", text)
    text = " ".join(sentences[:2]).strip()
    if not (15 <= len(text) <= 400):
        return None
    return text[0].upper() + text[1:]


def main():
    out_path = sys.argv[1]
    rng = random.Random(7)
    records = []
    for t in fortunes():
        records.append({"kind": "text", "text": t})
    questions = ["What does {w} mean?", "What is the meaning of {w}?", "Define {w}.",
                 "What is {a} {w}?", "Can you tell me what {w} means?", "Explain the word {w}."]
    seen = set()
    for name in ("gcide", "jargon", "devil"):
        for word, body in dictd_entries(name):
            key = word.lower()
            if key in seen or not re.fullmatch(r"[A-Za-z][A-Za-z -]{1,24}", word):
                continue
            d = clean_definition(word, body)
            if d is None:
                continue
            seen.add(key)
            q = rng.choice(questions).format(w=word, a="an" if word[0].lower() in "aeiou" else "a")
            answer = f"{word[0].upper() + word[1:]}: {d}" if rng.random() < 0.5 else d
            records.append({"kind": "chat", "user": q, "assistant": answer})
            if rng.random() < 0.3:
                records.append({"kind": "text", "text": f"{word}. {d}"})
    rng.shuffle(records)
    with open(out_path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n_chat = sum(r["kind"] == "chat" for r in records)
    print(f"{len(records)} records ({n_chat} chat), {os.path.getsize(out_path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
