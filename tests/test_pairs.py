"""spatialalign.pairs: winners/losers from scores (τ and no-τ), caps, invalid samples."""

from __future__ import annotations

import math

import pytest
from spatialalign.core.errors import SpatialAlignError
from spatialalign.pairs import PairConfig, ScoredSample, build_pairs

NAN = math.nan


def scored(prompt_id: str, *dsrs: float | None) -> list[ScoredSample]:
    """One prompt's samples ``{prompt_id}_s{i}``; None is an invalid sample."""
    return [
        ScoredSample(f"{prompt_id}_s{i}", prompt_id, d is not None, NAN if d is None else d)
        for i, d in enumerate(dsrs)
    ]


def test_tau_splits_winners_and_losers_and_never_uses_invalid():
    samples = scored("p1", 0.9, 0.2, None, 0.7, 0.69)
    pairs, report = build_pairs(samples, PairConfig(tau=0.7, max_per_prompt=100))
    got = {(p.winner, p.loser) for p in pairs}
    # winners s0 (0.9) and s3 (0.7, inclusive); losers s1 and s4; s2 is invalid
    assert got == {(w, lo) for w in ("p1_s0", "p1_s3") for lo in ("p1_s1", "p1_s4")}
    assert all("p1_s2" not in (p.winner, p.loser) for p in pairs)
    assert report.prompts == report.prompts_kept == 1 and report.pairs == 4
    assert all(p.dsr_winner >= 0.7 > p.dsr_loser for p in pairs)


def test_prompts_without_both_sides_are_dropped_and_counted():
    samples = (
        scored("all_win", 0.8, 0.9)
        + scored("all_lose", 0.1, 0.3)
        + scored("invalid", None, None)
        + scored("single", 0.9, None)
        + scored("ok", 0.9, 0.1)
    )
    pairs, report = build_pairs(samples, PairConfig())
    assert [(p.prompt_id, p.winner, p.loser) for p in pairs] == [("ok", "ok_s0", "ok_s1")]
    assert report.prompts == 5 and report.prompts_kept == 1
    assert dict(report.dropped) == {"no_loser": 1, "no_winner": 1, "no_valid": 1, "one_valid": 1}
    line = report.summary()
    assert "1 pair(s) from 1 of 5 prompt(s)" in line and "1 no_winner" in line


def test_invalid_losers_is_opt_in_and_pairs_invalid_only_as_losers():
    samples = scored("p1", 0.9, 0.2, None) + scored("single", 0.9, None) + scored("lost", 0.1, None)
    default, _ = build_pairs(samples, PairConfig(max_per_prompt=100))
    assert {(p.winner, p.loser) for p in default} == {("p1_s0", "p1_s1")}
    pairs, report = build_pairs(samples, PairConfig(max_per_prompt=100, invalid_losers=True))
    got = {(p.winner, p.loser) for p in pairs}
    # the invalid sample loses to the winner (never to another loser, never wins); a prompt
    # with one valid winner now pairs; one without a winner still does not
    assert got == {("p1_s0", "p1_s1"), ("p1_s0", "p1_s2"), ("single_s0", "single_s1")}
    assert dict(report.dropped) == {"no_winner": 1}
    # without tau an invalid sample loses to every valid one
    no_tau, _ = build_pairs(scored("q", 0.3, 0.1, None), PairConfig(tau=None, invalid_losers=True))
    assert {(p.winner, p.loser) for p in no_tau} == {
        ("q_s0", "q_s1"),
        ("q_s0", "q_s2"),
        ("q_s1", "q_s2"),
    }
    assert PairConfig(invalid_losers=True).to_dict()["invalid_losers"] is True


def test_cap_keeps_a_seeded_subset_independent_of_other_prompts():
    many = scored("p", 0.9, 0.95, 0.8, 0.1, 0.2, 0.3, 0.4)  # 3 winners x 4 losers = 12
    cfg = PairConfig(max_per_prompt=5, seed=3)
    alone, report = build_pairs(many, cfg)
    assert len(alone) == 5 and report.candidates == 12
    assert len({(p.winner, p.loser) for p in alone}) == 5  # no duplicates
    # the subset for "p" is the same whatever other prompts are in the table, in any order
    with_others, _ = build_pairs(scored("q", 0.9, 0.1) + many[::-1], cfg)
    assert [p for p in with_others if p.prompt_id == "p"] == alone
    other_seed, _ = build_pairs(many, PairConfig(max_per_prompt=5, seed=4))
    assert {(p.winner, p.loser) for p in other_seed} != {(p.winner, p.loser) for p in alone}


def test_no_tau_orders_random_pairs_by_relative_dsr():
    samples = scored("p", 0.3, 0.1, 0.2, 0.2, None)
    pairs, report = build_pairs(samples, PairConfig(tau=None, max_per_prompt=100))
    # every pair of valid samples with different DSR: 6 pairs of 4 minus the tie (s2, s3)
    assert len(pairs) == 5 and report.pairs == 5
    assert all(p.dsr_winner > p.dsr_loser for p in pairs)
    # below any tau a prompt still pairs: relative order is all that counts
    assert build_pairs(scored("low", 0.1, 0.2), PairConfig(tau=None))[0][0].winner == "low_s1"
    _, tied = build_pairs(scored("tie", 0.5, 0.5), PairConfig(tau=None))
    assert dict(tied.dropped) == {"all_tied": 1}


def test_animal_filter_keeps_only_chosen_animals():
    samples = scored("fox1", 0.9, 0.1) + scored("cat1", 0.9, 0.1)
    animal_of = {"fox1": "fox", "cat1": "cat"}
    pairs, report = build_pairs(samples, PairConfig(animals=("fox",)), animal_of)
    assert {p.prompt_id for p in pairs} == {"fox1"}
    assert dict(report.dropped) == {"filtered_animal": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"tau": 1.5}, "tau"), ({"max_per_prompt": 0}, "max")]
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(SpatialAlignError, match=message):
        PairConfig(**kwargs)


def test_pairs_cli_on_a_scored_run(tmp_path, capsys):
    from spatialalign.cli import main
    from spatialalign.core.fileio import read_parquet
    from spatialalign.core.provenance import record_of

    run = tmp_path / "run"
    main(["demo", str(run), "--synthetic"])
    main(["pairs", str(run), "--max-per-prompt", "2"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("pairs: ") and str(run / "pairs.parquet") in line

    table = read_parquet(run / "pairs.parquet").to_pylist()
    scores = {r["sample_id"]: r for r in read_parquet(run / "scores.parquet").to_pylist()}
    assert table, "the demo run has prompts with both winners and losers"
    for row in table:
        w, lo = scores[row["winner"]], scores[row["loser"]]
        assert w["valid"] and lo["valid"] and w["prompt_id"] == lo["prompt_id"] == row["prompt_id"]
        assert w["dsr"] >= 0.7 > lo["dsr"] and row["dsr_winner"] == w["dsr"]
    per_prompt = {}
    for row in table:
        per_prompt[row["prompt_id"]] = per_prompt.get(row["prompt_id"], 0) + 1
    assert max(per_prompt.values()) <= 2
    assert record_of(run / "pairs.parquet")["settings"]["max_per_prompt"] == 2

    main(["pairs", str(run), "--no-tau"])
    no_tau = read_parquet(run / "pairs.parquet").to_pylist()
    assert any(scores[r["winner"]]["dsr"] < 0.7 for r in no_tau)  # low-scoring prompts pair too
    assert all(r["dsr_winner"] > r["dsr_loser"] for r in no_tau)


def test_pairs_cli_errors_are_one_line(tmp_path, capsys):
    from spatialalign.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pairs", str(tmp_path)])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no scores in") and "\n" not in err


def _toy_ingested_run(tmp_path, n_prompts: int = 4, seeds: int = 3):
    """Toy clips of real prompts (official names) ingested, tracked and scored."""
    from shared_data import OFFICIAL_CSV
    from spatialalign.cli import main
    from spatialalign.core.video import write_video
    from spatialalign.prompts import read_prompts
    from spatialalign.toy.world import render_clip

    prompts = read_prompts(OFFICIAL_CSV)[:: 120 // n_prompts][:n_prompts]
    videos = tmp_path / "videos"
    for p in prompts:
        for seed in range(seeds):
            clip = render_clip(p, seed)
            write_video(videos / f"{p.prompt_id}_F81_seed{seed:02d}.mp4", clip.frames, fps=8)
    run = tmp_path / "run"
    main(["ingest", str(videos), "--prompts", str(OFFICIAL_CSV), "--run-dir", str(run)])
    main(["track", str(run), "--detector", "toy", "--workers", "1"])
    main(["score-batch", str(run), "-q"])
    return run, videos, prompts


def test_pairs_refuses_scores_older_than_the_tracks(tmp_path, capsys):
    """Issue 18 (B): pairs after track redid videos, without a new score-batch, used to
    write pairs from the old scores; it refuses now, and records the scores it read."""
    from spatialalign.cli import main
    from spatialalign.core.provenance import fingerprint, record_of
    from spatialalign.core.video import write_video
    from spatialalign.toy.world import render_clip

    run, videos, prompts = _toy_ingested_run(tmp_path)
    main(["pairs", str(run)])
    assert record_of(run / "pairs.parquet")["scores"] == fingerprint(run / "scores.parquet")
    capsys.readouterr()

    def refused() -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(["pairs", str(run)])
        assert e.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        return err

    # two videos get other content; ingest and track redo them, score-batch is not rerun
    for p in prompts[:2]:
        clip = render_clip(p, 77)
        write_video(videos / f"{p.prompt_id}_F81_seed00.mp4", clip.frames, fps=8)
    main(["ingest", str(videos), "--prompts", str(run / "prompts.parquet"), "--run-dir", str(run)])
    # the manifest is newer than the tracks: pairs names both stages to rerun
    err = refused()
    assert "2 video(s)" in err and "track" in err and "score-batch" in err
    main(["track", str(run), "--detector", "toy", "--workers", "1"])
    err = refused()
    assert "older than tracks.parquet for 2 video(s)" in err and "score-batch" in err

    main(["score-batch", str(run), "-q"])
    main(["pairs", str(run)])
    assert record_of(run / "pairs.parquet")["scores"] == fingerprint(run / "scores.parquet")
    # a rerun of track that redoes nothing leaves the scores current
    main(["track", str(run), "--detector", "toy", "--workers", "1"])
    main(["pairs", str(run)])
