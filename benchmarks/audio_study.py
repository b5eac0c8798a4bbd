#!/usr/bin/env python
"""Audio-encoder study: retrieval on unseen speech over several seeds and settings, and the
oracles that bound it (the numbers of docs/audio.md, "What else was measured").

For every setting (a JSON object of :class:`jeancore.train.AudioTrainConfig` fields) and every
seed, trains the landmark autoencoder and the audio encoder on the training splits of the given
preprocessed datasets (``jean train-audio``'s ``IDENTITY=DIR`` syntax works) and evaluates
audio-to-mouth retrieval on their validation splits (``jean evaluate-audio``: 32 candidate
frames per clip, 10 candidate sets). Prints top-1 / chance per seed, mean and standard
deviation: one seed's number moves by +-0.2-0.4x on these small validation splits.

``--train-fractions 0.25 0.5 1`` repeats every setting with only the first fraction of each
clip's training split (the validation splits stay the same): a learning curve.

``--oracles`` also measures, with the first setting's seed-0 autoencoder, what a predictor of
e_m better than audio would reach on the same metric: e_m interpolated from the two neighbouring
frames, and e_m plus Gaussian noise as large as that interpolation's error.

Usage:
  python benchmarks/audio_study.py obama=DATA/obama obama=DATA/obama_b_30s DATA/lieu ... \\
      --settings '{"negatives": 8, "min_negative_gap_s": 0.4}' '{"negatives": 4}' \\
      --seeds 0 1 2 3 4 [--train-fractions 0.25 0.5 1] [--oracles]
      [--out benchmarks/results/audio_study.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch


def _oracles(model, datasets) -> dict:
    from jeancore.metrics.audio import retrieval_accuracy

    ae = model.landmark_ae.eval()
    sums: dict = {}
    rng = np.random.default_rng(0)
    for d in datasets:
        with torch.no_grad():
            em = ae.encode(torch.from_numpy(d.landmarks))[1].numpy().astype(np.float64)
        v = d.split("val")[1:-1]
        interp = (em[v - 1] + em[v + 1]) / 2
        sd = float(np.std(em[v] - interp))
        for name, q in (("e_m interpolated from frames t-1, t+1", interp),
                        ("e_m + noise of that size", em[v] + rng.normal(0, sd, em[v].shape))):
            r = retrieval_accuracy(q, em[v])
            s = sums.setdefault(name, [0.0, 0.0])
            s[0] += r["top1"] * r["queries"]
            s[1] += r["chance_top1"] * r["queries"]
    return {k: a / b for k, (a, b) in sums.items()}


def _breakdown(model, datasets) -> list:
    """Top-1 / chance of the retrieval metric split by how close the nearest *other*
    candidate's mouth is to the query frame's mouth (mean distance of the 20 normalised mouth
    points, inter-ocular distances); the candidate sets of ``jean evaluate-audio``."""
    from jeancore.metrics.audio import retrieval_accuracy

    hits, chance, nearest = [], [], []
    ae = model.landmark_ae.eval()
    for d in datasets:
        v = d.split("val")
        with torch.no_grad():
            ea = model.audio_codes(torch.from_numpy(d.audio[v]))
            em = ae.encode(torch.from_numpy(d.landmarks[v]))[1]
        r = retrieval_accuracy(ea, em, return_queries=True)
        hits.append(r["query_ranks"] == 0)
        chance.append(np.full(r["queries"], 1.0 / r["n_candidates"]))
        for s in r["candidate_sets"]:
            mouth = d.landmarks[v][s][:, -20:]
            dist = np.linalg.norm(mouth[:, None] - mouth[None], axis=-1).mean(-1)
            np.fill_diagonal(dist, np.inf)
            nearest.append(dist.min(1))
    hits, chance, nearest = map(np.concatenate, (hits, chance, nearest))
    rows = []
    for lo, hi in ((0, 0.01), (0.01, 0.0136), (0.0136, 0.02), (0.02, np.inf), (0, np.inf)):
        m = (nearest >= lo) & (nearest < hi)
        rows.append({"nearest_other_mouth_iod": [lo, None if hi == np.inf else hi],
                     "queries": int(m.sum()),
                     "top1_over_chance": float(hits[m].mean() / chance[m].mean())})
    return rows


def _first_fraction(d, frac: float):
    """The dataset with only the first ``frac`` of its training split (at least 30 frames)
    followed by its whole validation split."""
    if frac >= 1.0:
        return d
    k = max(int(frac * d.val_start), 30)
    idx = np.r_[np.arange(k), np.arange(d.val_start, len(d.landmarks))]
    return dataclasses.replace(d, landmarks=d.landmarks[idx], audio=d.audio[idx], val_start=k)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--settings", nargs="+", default=["{}"],
                    help="JSON objects of AudioTrainConfig fields (default: paper settings)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--train-fractions", nargs="+", type=float, default=[1.0],
                    help="fractions of each clip's training split to train on (learning curve)")
    ap.add_argument("--oracles", action="store_true")
    ap.add_argument("--breakdown", action="store_true",
                    help="split the first model's top-1 by the nearest other candidate mouth")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)

    from jeancore.train.audio import (AudioTrainConfig, evaluate_audio, load_audio_datasets,
                                      load_audio_model, train_audio)

    full = load_audio_datasets(args.datasets)
    rows, first_model = [], None
    for setting, frac in [(s, f) for f in args.train_fractions for s in args.settings]:
        kw = json.loads(setting)
        data = [_first_fraction(d, frac) for d in full]
        vals, trains, secs = [], [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                train_audio(data, out, AudioTrainConfig(seed=seed, **kw),
                            progress=False, evaluate=False)
                secs.append(time.perf_counter() - t0)
                model = load_audio_model(Path(out) / "model.pt")
            vals.append(evaluate_audio(model, data)["overall"]["top1_over_chance"])
            trains.append(evaluate_audio(model, data, split="train")["overall"]
                          ["top1_over_chance"])
            first_model = first_model or model
            print(f"{setting} x{frac:g} seed {seed}: val {vals[-1]:.2f}x  train {trains[-1]:.2f}x  "
                  f"({secs[-1]:.0f} s)", flush=True)
        rows.append({"setting": kw, "train_fraction": frac,
                     "train_frames": int(sum(d.val_start for d in data)),
                     "seeds": args.seeds, "val_top1_over_chance": vals,
                     "train_top1_over_chance": trains, "seconds": secs})
    print("\n| setting | training frames | val top-1 / chance, mean +- sd (per seed) | "
          "train top-1 / chance |")
    print("|---|---|---|---|")
    for r in rows:
        v = np.array(r["val_top1_over_chance"])
        print(f"| `{json.dumps(r['setting'])}` | {r['train_frames']} | "
              f"{v.mean():.2f} +- {v.std():.2f} "
              f"({', '.join(f'{x:.2f}' for x in v)}) | "
              f"{np.mean(r['train_top1_over_chance']):.2f} |")
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": platform.platform(), "datasets": args.datasets, "rows": rows}
    if args.oracles:
        result["oracles"] = _oracles(first_model, full)
        print("\n| oracle query (not audio) | val top-1 / chance |\n|---|---|")
        for k, v in result["oracles"].items():
            print(f"| {k} | {v:.2f} |")
    if args.breakdown:
        result["breakdown"] = _breakdown(first_model, full)
        print("\n| nearest other candidate's mouth (IOD) | queries | top-1 / chance |\n"
              "|---|---|---|")
        for r in result["breakdown"]:
            lo, hi = r["nearest_other_mouth_iod"]
            print(f"| {lo:g} - {'' if hi is None else f'{hi:g}'} | {r['queries']} | "
                  f"{r['top1_over_chance']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
