#!/usr/bin/env python
"""Align a speech clip with a time-stretched copy of itself using jeancore's DTW.

JEAN aligns two utterances of the same sentence spoken with different emotions (and so at
different speeds) before training the expression transformer (Sec. 3.2, Eq. 3). This example
does the same with audio features so the result can be checked. It computes log-mel frames of
a real clip and of the same clip slowed down by a known factor (librosa's phase vocoder),
aligns them with ``jeancore.ops.align``, and reports how far the warping path is from the
known warp.

    python examples/dtw_align_speech.py ../shared/media/audio/radio31_8s_en.wav --rate 0.8
"""

from __future__ import annotations

import argparse

import librosa
import numpy as np
import torch

import jeancore.ops as ops


def log_mel(y: np.ndarray, sr: int, hop: int) -> torch.Tensor:
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=4 * hop, hop_length=hop, n_mels=64)
    return torch.from_numpy(librosa.power_to_db(mel, ref=np.max).T.astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio", help="speech file (any format librosa reads)")
    ap.add_argument("--rate", type=float, default=0.8, help="time-stretch rate (< 1: slower)")
    ap.add_argument("--hop", type=int, default=320, help="hop in samples at 16 kHz (320 = 20 ms)")
    args = ap.parse_args()

    y, sr = librosa.load(args.audio, sr=16000, mono=True)
    stretched = librosa.effects.time_stretch(y, rate=args.rate)
    x, z = log_mel(y, sr, args.hop), log_mel(stretched, sr, args.hop)
    x_aligned, z_aligned, path = ops.align(x, z)
    # Known warp: frame j of the stretched clip shows original frame j * rate.
    expected = path[:, 1].double() * args.rate
    error = (path[:, 0].double() - expected).abs()
    voiced = x[path[:, 0]].max(dim=1).values > -40.0  # frames within 40 dB of the peak
    print(f"{x.shape[0]} frames vs {z.shape[0]} frames (rate {args.rate}); path length "
          f"{path.shape[0]}; aligned sequences {tuple(x_aligned.shape)} and {tuple(z_aligned.shape)}")
    print(f"path vs known warp on voiced frames: median {error[voiced].median():.2f} frames, "
          f"{float((error[voiced] <= 1.5).double().mean()):.1%} within 1.5 frames")


if __name__ == "__main__":
    main()
