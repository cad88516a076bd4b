"""Batch scoring of Freddie Mac origination files: every line scored or rejected with a reason, scores equal to the
in-process bundle, zips and folders, atomic outputs, clear failures."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from loan_default.batch import score
from loan_default.core.bundle import load_bundle
from loan_default.core.scorer import Scorer
from loan_default.freddie.reader import read_origination
from loan_default.synthetic.generate import generate


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic origination files of two vintages (performance files and truth.csv removed: scoring needs neither),
    with ~5% corrupted records so some values fall outside the valid ranges."""
    folder = tmp_path_factory.mktemp("orig")
    generate(folder, 800, seed=5, vintages="2006-2007", corrupted_share=0.05)
    for path in folder.iterdir():
        if not path.name.startswith("sample_orig_"):
            path.unlink()
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def spoil(path: Path) -> dict[int, str]:
    """Inject one problem of each kind; returns line number -> words expected in its reason."""
    lines = path.read_text().splitlines()
    fields = lines[3].split("|")
    fields[7] = "Q"  # occupancy: unknown code
    lines[3] = "|".join(fields)
    fields = lines[5].split("|")
    fields[9] = "70"  # DTI above 65 (Freddie reports those as 999)
    lines[5] = "|".join(fields)
    lines[7] = "|".join(lines[7].split("|")[:20])  # cut short
    lines.insert(10, lines[9])  # duplicate loan id on line 11
    fields = lines[12].split("|")
    fields[12] = "abc"  # note rate not a number
    lines[12] = "|".join(fields)
    lines.insert(14, "")  # an empty line: no loan, not a reject
    path.write_text("\n".join(lines) + "\n")
    return {4: "occupancy", 6: "dti", 8: "20 fields", 11: "duplicate loan id (first on line 10)", 13: "orig_rate"}


def test_every_line_is_scored_or_rejected_and_scores_match_in_process(files, bundle_path, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(files, folder)
    expected_reasons = spoil(folder / "sample_orig_2007.txt")
    out = tmp_path / "out" / "scores.csv"
    assert score.main([str(folder), "--bundle", str(bundle_path), "--out", str(out), "--chunk-rows", "150"]) == 0

    scores, rejects = read_csv(out), read_csv(out.with_name("scores.rejects.csv"))
    lines = sum(1 for p in folder.iterdir() for line in p.read_text().splitlines() if line.strip())
    assert len(scores) + len(rejects) == lines
    assert len({s["loan_id"] for s in scores}) == len(scores)

    spoiled = {int(r["line"]): r["reason"] for r in rejects if r["file"].endswith("sample_orig_2007.txt")}
    for line, words in expected_reasons.items():
        assert words in spoiled[line], (line, spoiled.get(line))
    # Corrupted records: note rates times ten are outside 0-30, refused exactly as the API refuses them.
    assert any("orig_rate: expected a number from 0 to 30" in r["reason"] for r in rejects)

    # Independent reference: the reader's loan table through the in-process bundle.
    bundle = load_bundle(bundle_path)
    table = read_origination(files / "sample_orig_2006.txt")
    by_id = {s["loan_id"]: s for s in scores}
    kept = table[table["loan_id"].isin(list(by_id))]
    got = np.array([float(by_id[i]["default_probability"]) for i in kept["loan_id"]])
    np.testing.assert_allclose(got, bundle.predict_proba(kept), rtol=0, atol=1e-6)
    decisions = ["default" if p >= bundle.threshold else "no_default" for p in got]
    assert [by_id[i]["decision"] for i in kept["loan_id"]] == decisions


def test_zipped_files_give_the_same_scores(files, bundle_path, tmp_path):
    plain, zipped = tmp_path / "plain.csv", tmp_path / "zipped.csv"
    assert score.main([str(files), "--bundle", str(bundle_path), "--out", str(plain)]) == 0
    archive = tmp_path / "zips" / "sample_2006_2007.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(files.iterdir()):
            z.write(path, arcname=path.name)
    assert score.main([str(archive.parent), "--bundle", str(bundle_path), "--out", str(zipped)]) == 0
    assert read_csv(plain) == read_csv(zipped)


def test_unreadable_file_is_reported_and_the_others_scored(files, bundle_path, tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(files, folder)
    (folder / "sample_orig_2010.txt").write_text("")
    out = tmp_path / "scores.csv"
    assert score.main([str(folder), "--bundle", str(bundle_path), "--out", str(out)]) == 1
    rejects = read_csv(tmp_path / "scores.rejects.csv")
    assert [r["reason"] for r in rejects if r["file"].endswith("2010.txt")] == [
        f"file not read: {folder / 'sample_orig_2010.txt'}: the origination file is empty"
    ]
    assert len(read_csv(out)) > 700
    assert "not read" in capsys.readouterr().err


def test_interrupted_run_leaves_no_output(files, bundle_path, tmp_path, monkeypatch):
    def fail(self, loans):
        raise KeyboardInterrupt

    monkeypatch.setattr(Scorer, "predict", fail)
    out = tmp_path / "scores.csv"
    with pytest.raises(KeyboardInterrupt):
        score.main([str(files), "--bundle", str(bundle_path), "--out", str(out)])
    assert list(tmp_path.iterdir()) == []


def test_without_a_bundle_it_says_to_train_first(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert score.main([str(files), "--out", str(tmp_path / "scores.csv")]) == 1
    assert "python train.py" in capsys.readouterr().err


def test_no_origination_files_is_a_clear_error(bundle_path, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("nothing here")
    assert score.main([str(tmp_path), "--bundle", str(bundle_path)]) == 1
    assert "no origination files found" in capsys.readouterr().err


def test_files_are_scored_in_chunks_never_whole(files, bundle_path, tmp_path, monkeypatch):
    """Flat memory: no whole-file read, and no more than --chunk-rows loans validated and scored at once."""
    whole = tmp_path / "whole.csv"
    assert score.main([str(files), "--bundle", str(bundle_path), "--out", str(whole)]) == 0
    sizes: list[int] = []
    validate = score.validate
    monkeypatch.setattr(score, "validate", lambda records: (sizes.append(len(records)), validate(records))[1])
    monkeypatch.setattr(score.reader, "read_origination", lambda *a, **k: pytest.fail("read a whole file"))
    chunked = tmp_path / "chunked.csv"
    assert score.main([str(files), "--bundle", str(bundle_path), "--out", str(chunked), "--chunk-rows", "64"]) == 0
    assert len(sizes) > 10 and max(sizes) <= 64
    got, want = read_csv(chunked), read_csv(whole)
    assert [r["loan_id"] for r in got] == [r["loan_id"] for r in want]
    for key in ("default_probability", "outlier_score"):  # float32 sums differ in the last bits with batch size
        assert np.allclose([float(r[key]) for r in got], [float(r[key]) for r in want], rtol=1e-5, atol=1e-9)
