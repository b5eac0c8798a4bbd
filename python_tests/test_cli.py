"""The `jean` command line (jeancore/cli/): options generated from the config dataclasses,
the flags that docs, examples and the Makefile use, presets, aliases, errors and Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import re
import typing

import pytest
import torch

from jeancore.cli import COMMANDS, command_class, main, parse_command
from jeancore.cli._options import UsageError


def _help(capsys, *args) -> str:
    """``jean ARGS --help``, its words on one line (the help is laid out in boxes)."""
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.replace("│", " ").split())


def _flags(cls, prefix="") -> list[tuple[str, bool]]:
    """(flag name, is a bool) of every field of the dataclass ``cls``, nested dataclasses
    included (``adnerf.width``)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name.replace("_", "-")
        if dataclasses.is_dataclass(hints[f.name]):
            out += _flags(hints[f.name], name + ".")
        else:
            out.append((name, hints[f.name] is bool))
    return out


def _missing(text, flags) -> list[str]:
    """The flags that are not options in the help ``text`` (a bool is ``--x`` or ``--no-x``,
    by its default; nested: ``--grid.no-x``)."""
    def pattern(name, is_bool):
        head, _, last = name.rpartition(".")
        head = re.escape(head + ".") if head else ""
        return rf"--{head}{'(no-)?' if is_bool else ''}{re.escape(last)}(?![\w.-])"
    return [name for name, is_bool in flags if not re.search(pattern(name, is_bool), text)]


def test_train_help_lists_every_field_of_the_nerf_config(capsys):
    from jeancore.train import NerfTrainConfig

    text = _help(capsys, "train", "--device", "cpu")
    flags = _flags(NerfTrainConfig)
    assert ("adnerf.width", False) in flags and ("iters", False) in flags and len(flags) > 30
    missing = _missing(text, flags)
    assert not missing, missing
    # short help from the field docstrings, one paragraph each; the preset's defaults
    assert "Hidden width of the MLPs" in text and "(default: 64)" in text
    assert "``" not in text and ":class:" not in text
    assert "(default: 400000)" in _help(capsys, "train", "--preset", "full")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_reaches_every_field_of_its_config(name, capsys):
    cls = command_class(name)
    text = _help(capsys, name)
    hints = typing.get_type_hints(cls)
    hidden = {f.replace("_", "-") for (c, f), r in getattr(cls, "refine", {}).items()
              if r.hidden}
    own = [(f.name.replace("_", "-"), hints[f.name] is bool) for f in dataclasses.fields(cls)
           if f.name != "config" and f.default is not dataclasses.MISSING]
    conf = [] if "config" not in hints else [
        (f, b) for f, b in _flags(hints["config"]) if f not in hidden]
    missing = _missing(text, own + conf)
    assert not missing, missing
    assert COMMANDS[name][1]  # a summary for `jean --help`


def test_train_flags_the_docs_use(tmp_path):
    c = parse_command("train", [
        "data/me", "--out", "runs/me", "--preset", "cpu-smoke", "--iters", "7", "--minutes",
        "1.5", "--resolution", "48", "--ops", "reference", "--device", "cpu", "--seed", "3",
        "--fixed-background", "--resume", "--quiet", "--audio-encoder", "A",
        "--expression-encoder", "E", "--adnerf.width", "32", "--adnerf.skips", "1", "2"])
    cfg = c.train_config()
    assert (c.dataset, c.out, c.audio_encoder, c.expression_encoder) == (
        "data/me", "runs/me", "A", "E")
    assert c.resume and c.quiet
    assert (cfg.preset, cfg.iters, cfg.resolution, cfg.ops, cfg.device, cfg.seed) == (
        "cpu-smoke", 7, 48, "reference", "cpu", 3)
    assert cfg.time_limit_s == 90.0 and cfg.random_background is False
    assert cfg.adnerf.width == 32 and cfg.adnerf.skips == (1, 2)
    # the rest is the preset's (a preset's value is not a CLI default written twice)
    from jeancore.train import preset_config

    smoke = preset_config("cpu-smoke", "cpu")
    assert cfg.n_rays == smoke.n_rays and cfg.adnerf.n_coarse == smoke.adnerf.n_coarse
    full = parse_command("train", ["d", "--out", "o", "--preset", "full",
                                   "--device", "cpu"]).train_config()
    assert full == preset_config("full", "cpu")
    if not torch.cuda.is_available():  # no --preset: by device
        assert parse_command("train", ["d", "--out", "o"]).config.preset == "cpu"


def test_other_commands_flags_the_docs_use():
    p = parse_command("preprocess", ["v.mp4", "--out", "d", "--audio", "s.wav", "--size",
                                     "128", "--max-seconds", "1.2", "--av-sync", "off",
                                     "--landmarks", "dlib", "--quiet"])
    assert (p.video, p.out, p.config.audio, p.config.size, p.config.max_seconds,
            p.config.av_sync, p.quiet) == ("v.mp4", "d", "s.wav", 128, 1.2, "off", True)
    assert parse_command("preprocess", ["v", "--out", "d", "--no-audio"]).config.no_audio
    m = parse_command("preprocess-mead", ["MEAD", "--out", "o", "--ids", "M030", "W011",
                                          "--levels", "1", "3"])
    assert m.ids == ("M030", "W011") and m.levels == (1, 3) and m.config.size == 256
    with pytest.raises(UsageError):  # each take's speech is its own m4a
        parse_command("preprocess-mead", ["MEAD", "--out", "o", "--audio", "x.wav"])
    a = parse_command("train-audio", ["spk=a", "b", "--out", "r", "--ae-epochs", "2",
                                      "--min-negative-gap", "2.5", "--in-batch"])
    assert a.datasets == ("spk=a", "b") and a.config.ae_epochs == 2
    assert a.config.min_negative_gap_s == 2.5 and a.config.in_batch
    e = parse_command("evaluate-audio", ["generic", "d1", "d2", "--candidates", "16",
                                         "--split", "train"])
    assert e.datasets == ("d1", "d2") and e.config.n_candidates == 16
    assert e.config.split == "train" and e.device == "cpu"
    x = parse_command("train-expression", ["MEAD", "--out", "o", "--identity", "M030",
                                           "--ff-dim", "512"])
    assert x.train_config().init == "generic" and x.config.ff_dim == 512
    assert parse_command("train-expression", ["MEAD", "--out", "o"]).train_config().init is None
    assert parse_command("train-expression", ["M", "--out", "o", "--identity", "M030",
                                              "--init", "none"]).train_config().init is None
    r = parse_command("render", ["run", "--audio", "a.wav", "--expression", "e.mp4", "--out",
                                 "o.mp4", "--no-grid", "--fit", "loop", "--pose", "frozen",
                                 "--background", "dataset", "--size", "64"])
    assert (r.pose, r.config.grid, r.config.fit, r.config.background, r.config.size) == (
        "frozen", False, "loop", "dataset", 64)
    assert parse_command("render", ["run", "--audio", "a", "--expression", "e", "--out",
                                    "o.mp4"]).pose == "dataset"
    v = parse_command("evaluate", ["run", "--max-frames", "12", "--size", "64",
                                   "--syncnet-weights", "s.model"])
    assert (v.config.max_frames, v.config.size, v.syncnet_weights) == (12, 64, "s.model")


@pytest.mark.parametrize("args, message", [
    (["train", "d", "--out", "o", "--iters", "many"], "--iters"),
    (["train", "d", "--out", "o", "--ops", "cuda"], "'cuda'"),
    (["train", "d", "--out", "o", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "d", "--out", "o", "--bogus"], "--bogus"),
    (["train", "d"], "--out"),
    (["render", "run", "--audio", "a"], "--expression"),
    (["train-audio", "--out", "o"], "at least one"),
    (["teach"], "invalid choice"),
    ([], "COMMAND"),
])
def test_errors_are_one_line_with_status_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("jean: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ctrl_c_exits_130(monkeypatch, capsys):
    from jeancore.cli.data import Preprocess

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Preprocess, "execute", interrupted)
    assert main(["preprocess", "v.mp4", "--out", "d"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_jean_train_runs_and_resumes(preprocessed, tmp_path, capsys):
    """`jean train` end to end on a real dataset with nested backbone options."""
    dataset = preprocessed("obama_8s_128").root
    out = tmp_path / "run"
    tiny = ["--preset", "cpu-smoke", "--resolution", "32", "--n-rays", "64",
            "--adnerf.n-coarse", "8",
            "--adnerf.n-fine", "8", "--adnerf.width", "32", "--adnerf.depth", "4",
            "--adnerf.skips", "1", "--val-every", "0", "--val-frames", "1",
            "--no-val-at-start", "--device", "cpu", "--quiet", "--fixed-background"]
    assert main(["train", str(dataset), "--out", str(out), "--iters", "2", *tiny]) == 0
    assert "NeRF (cpu-smoke, cpu): 2 steps" in capsys.readouterr().out
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]
    assert saved["adnerf"]["width"] == 32 and saved["random_background"] is False
    assert main(["train", str(dataset), "--out", str(out), "--iters", "3", "--resume",
                 *tiny]) == 0
    assert "3 steps" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["step"] == 3
