"""``jean preprocess`` (one video -> a dataset, :func:`jeancore.data.preprocess`) and
``jean preprocess-mead`` (every frontal MEAD take with its speech,
:func:`jeancore.data.mead.preprocess_mead`); their settings are
:class:`~jeancore.data.PreprocessConfig`'s fields."""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import tyro

from ..data.config import LANDMARK_BACKENDS, MISSING_FACE_MODES, PreprocessConfig
from ._options import Refine

__all__ = ["Preprocess", "PreprocessMead"]

_CHOICES = {(PreprocessConfig, "landmarks"): Refine(choices=LANDMARK_BACKENDS),
            (PreprocessConfig, "missing_face"): Refine(choices=MISSING_FACE_MODES)}


@dataclasses.dataclass
class Preprocess:
    """Decode, crop, track the face (68 landmarks, 3DMM pose), parse head / torso /
    background, and compute audio and emotion features. Each step is cached in OUT, so an
    interrupted run resumes where it stopped."""

    video: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="VIDEO")]
    """the video (mp4, mov, mkv, ...): one person facing the camera"""
    out: str
    """dataset directory to create (or resume)"""
    overwrite: bool = False
    """replace a dataset of another video in --out"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[PreprocessConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=PreprocessConfig)

    refine: ClassVar[dict] = _CHOICES

    def execute(self) -> int:
        from ..data.pipeline import preprocess

        res = preprocess(self.video, self.out, self.config, overwrite=self.overwrite,
                         progress=not self.quiet)
        print(res.report())
        return 0


@dataclasses.dataclass
class PreprocessMead:
    """Finds <ID>/video/front/<emotion>/level_<k>/<nnn>.mp4 and its
    <ID>/audio/<emotion>/level_<k>/<nnn>.m4a under MEAD_ROOT and runs `jean preprocess` on
    each take with the m4a as --audio (cached: a rerun resumes); writes mead_index.json in
    --out for `jean train-audio OUT`."""

    root: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MEAD_ROOT")]
    """the MEAD root"""
    out: str
    """output root: one dataset per take and mead_index.json"""
    ids: tuple[str, ...] | None = None
    """speakers to use (None: all)"""
    emotions: tuple[str, ...] | None = None
    """emotions to use (None: all)"""
    levels: tuple[int, ...] | None = None
    """intensity levels (None: all)"""
    skip_failed: bool = False
    """skip takes that fail (listed in the index) instead of stopping"""
    overwrite: bool = False
    """replace datasets of other videos"""
    quiet: bool = False
    """no progress bars"""
    config: Annotated[PreprocessConfig, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=PreprocessConfig)

    # each take's speech is its m4a
    refine: ClassVar[dict] = {**_CHOICES,
                              (PreprocessConfig, "audio"): Refine(hidden=True),
                              (PreprocessConfig, "no_audio"): Refine(hidden=True)}

    @classmethod
    def defaults(cls, args: list[str]) -> PreprocessMead:
        from ..data.mead import MEAD_SETTINGS

        return cls(root=tyro.MISSING, out=tyro.MISSING,
                   config=PreprocessConfig(**MEAD_SETTINGS))

    def execute(self) -> int:
        from ..data.mead import preprocess_mead

        entries = preprocess_mead(self.root, self.out, self.config, ids=self.ids,
                                  emotions=self.emotions, levels=self.levels,
                                  overwrite=self.overwrite, progress=not self.quiet,
                                  skip_failed=self.skip_failed)
        print(f"{len(entries)} MEAD takes preprocessed into {self.out} (index: "
              f"{self.out}/mead_index.json); next: jean train-audio {self.out} --out RUN_DIR")
        return 0
