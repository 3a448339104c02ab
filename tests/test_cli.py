import json

from typer.testing import CliRunner

from edgevoice.cli import app

runner = CliRunner()


def test_corpus_stats_json_and_plot(tiny_corpus):
    out, _, summary = tiny_corpus
    result = runner.invoke(app, ["corpus", "stats", str(out), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["utterances"] == summary["utterances"]
    assert sum(stats["hours_per_split"].values()) == __import__("pytest").approx(stats["hours"], abs=0.002)
    assert (out / "stats.png").stat().st_size > 10_000


def test_corpus_build_and_stats_commands(tmp_path):
    templates = tmp_path / "t.yaml"
    templates.write_text("intents:\n  Ping:\n    data:\n      - sentences:\n          - 'ping the {thing}'\n"
                         "lists:\n  thing:\n    values: [server, router, printer]\n")
    result = runner.invoke(app, ["corpus", "build", "--out", str(tmp_path / "c"), "--hours", "0.002",
                                 "--templates", str(templates), "--sources", "templates", "--quiet", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "utterances" in result.output and (tmp_path / "c" / "manifest.jsonl").exists()
    result = runner.invoke(app, ["corpus", "stats", str(tmp_path / "c")])
    assert result.exit_code == 0 and "Ping" in result.output


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("")
    result = runner.invoke(app, ["corpus", "build", "--out", str(tmp_path / "c"), "--templates", str(bad),
                                 "--sources", "templates", "--quiet"])
    assert result.exit_code == 2
    assert "error:" in result.output and "bad.yaml" in result.output and "empty" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["corpus", "say", "hi", "--voice", "flite:zed:p1.00:w1.00"])
    assert result.exit_code == 2 and "unknown flite voice 'zed'" in result.output
    result = runner.invoke(app, ["corpus", "stats", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "manifest not found" in result.output


def test_say_and_sample(tmp_path):
    result = runner.invoke(app, ["corpus", "say", "Set a timer for 5 minutes", "--voice",
                                 "festival:cmu_us_slt_arctic_hts:p1.00:w1.05", "--out", str(tmp_path / "s.wav")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.wav").stat().st_size > 20_000
    result = runner.invoke(app, ["corpus", "sample", "-n", "3"])
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(lines) == 3 and all(line["intent"].startswith("Hass") for line in lines)
