"""The published benchmark results (bench/results_writer.py), what `make bench` checks before
it starts (bench/preflight.py) and how SCALE reaches each benchmark (bench/run.py). No
benchmark runs here: the writer is fed the sections a run would record.

bench/ is not a package: its scripts import each other as siblings (``import harness``), so
its folder goes on sys.path, at the end: bench/console.py, gates.py and evidence.py must
not hide the apps of the same names.
"""

import socket
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

import preflight  # noqa: E402
import results_writer  # noqa: E402
import run  # noqa: E402

ORDER = ["fanout", "gates", "webhooks"]


def a_run(run_id: str, *, scale: int | None = None, commit: str = "a" * 40) -> dict:
    return {
        "id": run_id,
        "commit": commit,
        "dirty": False,
        "scale": scale,
        "load_before": [0.5, 0.4, 0.3],
        "machine": {
            "cores": 2,
            "cpu": "Test CPU",
            "memory_gib": 8.0,
            "kernel": "Linux 6.1",
            "python": "3.11.7",
            "django": "5.2",
            "celery": "5.7.0",
            "psycopg": "3.2",
            "postgresql": "PostgreSQL 15.20 (Debian) on x86_64-pc-linux-gnu, compiled by gcc",
            "redis": "7.0.15",
        },
    }


def a_section(*, rows_per_s: float = 250_000.0, ok: bool = True, status: str = "ran") -> dict:
    return {
        "status": status,
        "exit_code": 0 if status == "ran" else 1,
        "wall_seconds": 26.4,
        "command": "bench/fanout.py --rows 10000 --celery-rows 200",
        "load_before": [1.0, 0.8, 0.5],
        "targets": {
            "app rows/s": {"measured": rows_per_s, "target": ">= 200,000", "pass": ok},
        },
        "figures": {"rows": 10_000, "rows_per_s": {"app": rows_per_s}, "seconds": [0.1, 0.2]},
    }


def recorded(*steps: tuple[dict, str, dict]) -> dict:
    results = {"runs": {}, "benchmarks": {}}
    for run_facts, name, section in steps:
        results = results_writer.section_record(results, run=run_facts, name=name, section=section)
    return results


# --- Merging one benchmark's section ---------------------------------------------------------


def test_rerunning_one_benchmark_keeps_the_others_with_the_run_they_were_measured_in():
    monday, tuesday = a_run("2025-01-06T10:00:00Z"), a_run("2025-01-07T10:00:00Z", scale=10_000)
    results = recorded(
        (monday, "fanout", a_section()),
        (monday, "gates", a_section()),
        (tuesday, "gates", a_section(rows_per_s=1.0, ok=False)),
    )

    assert results["benchmarks"]["fanout"]["run"] == monday["id"]
    assert results["benchmarks"]["fanout"]["targets"]["app rows/s"]["pass"] is True
    assert results["benchmarks"]["gates"]["run"] == tuesday["id"]
    assert results["benchmarks"]["gates"]["targets"]["app rows/s"]["pass"] is False
    assert list(results["runs"]) == [monday["id"], tuesday["id"]]


def test_a_run_no_benchmark_was_measured_in_any_more_is_dropped():
    monday, tuesday = a_run("2025-01-06T10:00:00Z"), a_run("2025-01-07T10:00:00Z")
    results = recorded(
        (monday, "fanout", a_section()),
        (monday, "gates", a_section()),
        (tuesday, "fanout", a_section()),
        (tuesday, "gates", a_section()),
    )

    assert list(results["runs"]) == [tuesday["id"]]


def test_results_written_and_loaded_again_are_the_same(tmp_path):
    results = recorded((a_run("2025-01-06T10:00:00Z"), "fanout", a_section()))
    json_path, md_path = tmp_path / "results.json", tmp_path / "RESULTS.md"

    results_writer.results_write(results, order=ORDER, json_path=json_path, md_path=md_path)

    assert results_writer.results_load(json_path) == results
    assert md_path.read_text() == results_writer.markdown_render(results, order=ORDER)


def test_no_results_file_yet_is_an_empty_record(tmp_path):
    assert results_writer.results_load(tmp_path / "none.json") == {"runs": {}, "benchmarks": {}}


# --- RESULTS.md ----------------------------------------------------------------------------


def summary_table(markdown: str) -> list[str]:
    summary = markdown.split("## Summary")[1].split("## Runs")[0]
    return [line for line in summary.splitlines() if line.startswith("| ")][2:]


def test_the_summary_lists_every_target_and_every_benchmark_without_one():
    monday = a_run("2025-01-06T10:00:00Z", scale=10_000)
    results = recorded(
        (monday, "fanout", a_section(rows_per_s=64_449.0, ok=False)),
        (monday, "gates", {**a_section(), "targets": None}),
        (monday, "webhooks", {**a_section(status="failed"), "targets": None}),
    )

    rows = summary_table(results_writer.markdown_render(results, order=[*ORDER, "e2e"]))

    assert rows == [
        "| fanout | app rows/s | 64,449 | >= 200,000 | **MISS** | 2025-01-06 10:00:00 |",
        "| gates | (no targets: figures only) |  |  |  | 2025-01-06 10:00:00 |",
        "| webhooks | (failed: exit code 1) |  |  |  | 2025-01-06 10:00:00 |",
        "| e2e | (not run yet) |  |  |  |  |",
    ]


def test_the_summary_says_what_the_latest_run_ran_and_what_failed():
    monday, tuesday = a_run("2025-01-06T10:00:00Z"), a_run("2025-01-07T10:00:00Z")
    results = recorded(
        (monday, "gates", a_section()),
        (tuesday, "fanout", a_section()),
        (tuesday, "webhooks", a_section(status="failed", ok=False)),
    )

    markdown = results_writer.markdown_render(results, order=ORDER)

    assert "The latest run (2025-01-07 10:00:00 UTC) ran fanout; failed: webhooks." in markdown
    assert "2 of 3 targets met, 1 missed; benchmarks failed: 1, not run yet: 0." in markdown


def test_each_section_says_when_at_which_commit_and_scale_and_how_to_reproduce():
    older = a_run("2025-01-06T10:00:00Z", commit="1234567890abcdef" + "0" * 24)
    newer = {**a_run("2025-01-07T10:00:00Z", scale=10_000), "dirty": True}
    results = recorded((older, "gates", a_section()), (newer, "fanout", a_section()))

    markdown = results_writer.markdown_render(results, order=ORDER)
    fanout = markdown.split("### fanout")[1].split("###")[0]
    gates = markdown.split("### gates")[1].split("###")[0]

    assert "2025-01-07 10:00:00 UTC at commit aaaaaaaaaa (dirty), SCALE 10,000" in fanout
    assert "`SCALE=10000 make bench BENCH=fanout`" in fanout
    assert "`bench/fanout.py --rows 10000 --celery-rows 200`" in fanout
    assert "2025-01-06 10:00:00 UTC at commit 1234567890, SCALE default sizes" in gates
    assert "`make bench BENCH=gates`" in gates
    intro = markdown.split("## Summary")[0]
    assert "- `SCALE=10000 make bench BENCH=fanout`\n- `make bench BENCH=gates`" in intro


def test_runs_still_in_the_results_are_listed_with_what_they_ran_on_one_machine():
    results = recorded(
        (a_run("2025-01-06T10:00:00Z"), "gates", a_section()),
        (a_run("2025-01-07T10:00:00Z", scale=10_000), "fanout", a_section()),
    )

    markdown = results_writer.markdown_render(results, order=ORDER)

    assert "| 2025-01-06 10:00:00 | aaaaaaaaaa | default sizes | 0.5 0.4 0.3 | gates |" in markdown
    assert "| 2025-01-07 10:00:00 | aaaaaaaaaa | 10,000 | 0.5 0.4 0.3 | fanout |" in markdown
    assert "|  | machine |" in markdown
    assert "| cores | 2 |" in markdown
    assert "| PostgreSQL | PostgreSQL 15.20 (Debian) on x86_64-pc-linux-gnu |" in markdown


def test_runs_on_different_machines_say_which_machine_each_was():
    bigger = a_run("2025-01-07T10:00:00Z")
    bigger["machine"] = {**bigger["machine"], "cores": 8}
    results = recorded(
        (a_run("2025-01-06T10:00:00Z"), "gates", a_section()), (bigger, "fanout", a_section())
    )

    markdown = results_writer.markdown_render(results, order=ORDER)

    assert "| 0.5 0.4 0.3 | fanout | machine 2 |" in markdown
    assert "|  | machine 1 | machine 2 |" in markdown
    assert "| cores | 2 | 8 |" in markdown


def test_rendering_is_deterministic_whatever_order_the_benchmarks_were_recorded_in():
    monday = a_run("2025-01-06T10:00:00Z")
    one_way = recorded((monday, "gates", a_section()), (monday, "fanout", a_section()))
    other_way = recorded((monday, "fanout", a_section()), (monday, "gates", a_section()))

    rendered = results_writer.markdown_render(one_way, order=ORDER)

    assert rendered == results_writer.markdown_render(other_way, order=ORDER)
    assert rendered.index("### fanout") < rendered.index("### gates")


def test_key_figures_leave_out_lists_and_targets_and_are_capped(monkeypatch):
    figures = {"rows": 10, "seconds": [1.0, 2.0], "targets": {}, "a": {"b": {"c": 0.5}}}
    assert results_writer.figures_flatten(figures) == [("rows", 10), ("a.b.c", 0.5)]

    monkeypatch.setattr(results_writer, "FIGURES_SHOWN", 1)
    section = {**a_section(), "figures": figures}
    lines = results_writer.section_lines("fanout", section, a_run("2025-01-06T10:00:00Z"))
    assert "| rows | 10 |" in lines
    assert "| a.b.c | 0.5 |" not in lines
    assert "(1 more in results.json)" in lines


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1234567, "1,234,567"), (250000.4, "250,000"), (12.345, "12.3"), (0.76234, "0.762"),
     (True, "yes"), (float("inf"), "n/a"), ("54 -> 55", "54 -> 55"), (None, "-")],
)  # fmt: skip
def test_figures_are_shown_as_people_read_them(value, shown):
    assert results_writer.value_fmt(value) == shown


# --- What make bench needs -------------------------------------------------------------------


def a_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_services_and_tools_are_each_named_in_one_line_with_what_to_do(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setattr(preflight.shutil, "which", lambda name: None)
    monkeypatch.setattr(preflight.harness, "GNU_TIME", "/nonexistent/time")
    port = a_closed_port()

    servers, problems = preflight.services_check(
        f"postgres://postgres@127.0.0.1:{port}/renotify_bench", f"redis://127.0.0.1:{port}/11"
    )

    assert servers == {"postgresql": "", "redis": ""}
    assert [line.split(":")[0] for line in problems] == [
        "PostgreSQL is not reachable at 127.0.0.1",
        "Redis is not reachable at 127.0.0.1",
        "wrk is not installed",
        "GNU time (/nonexistent/time) is not installed",
    ]
    assert (
        f"127.0.0.1:{port} (DATABASE_URL unset or not PostgreSQL): start it or set" in (problems[0])
    )
    assert f"127.0.0.1:{port} (REDIS_URL unset): start it" in problems[1]
    assert "apt-get install wrk" in problems[2]
    assert "apt-get install time" in problems[3]
    assert all("\n" not in line for line in problems)


def test_run_stops_before_any_benchmark_with_those_lines_and_no_traceback(monkeypatch):
    monkeypatch.setattr(
        preflight,
        "services_check",
        lambda *urls: ({}, ["wrk is not installed: apt-get install wrk"]),
    )

    with pytest.raises(SystemExit) as stopped:
        run.preflight_run("postgres://postgres@127.0.0.1:5432/renotify_bench", None)

    assert (
        stopped.value.code
        == "make bench cannot start:\n- wrk is not installed: apt-get install wrk"
    )


# --- SCALE -----------------------------------------------------------------------------------


def test_scale_replaces_the_count_and_scales_a_second_size_in_proportion():
    assert run.benchmark_command("fanout", None, None) == [
        "bench/fanout.py", "--rows", "1000000", "--celery-rows", "20000"
    ]  # fmt: skip
    assert run.benchmark_command("fanout", 100_000, None) == [
        "bench/fanout.py", "--rows", "100000", "--celery-rows", "2000"
    ]  # fmt: skip
    assert run.benchmark_command("evidence_report", 10_000, None) == [
        "bench/evidence_report.py", "--members", "10000", "--repeat", "3"
    ]  # fmt: skip


def test_scale_reaches_scripts_that_read_it_through_their_environment_only(monkeypatch):
    monkeypatch.setenv("SCALE", "5")  # whatever the caller had: run.py decides
    url = "postgres://postgres@127.0.0.1:5432/renotify_bench"

    assert run.benchmark_env(url, "member_upsert", 10_000)["SCALE"] == "10000"
    assert "SCALE" not in run.benchmark_env(url, "member_upsert", None)
    assert "SCALE" not in run.benchmark_env(url, "fanout", 10_000)  # given as --rows
    assert "SCALE" not in run.benchmark_env(url, "throttle_accuracy", 10_000)


def test_a_scale_that_is_not_a_count_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("SCALE", "100k")

    with pytest.raises(SystemExit, match="SCALE must be a whole number"):
        run.scale_from_env()


# --- One benchmark's section, from its child process -------------------------------------------

WRITES_FIGURES = """
import json, pathlib, sys
figures = {"rows": 10, "targets": {"rows/s": {"measured": 5.0, "target": ">= 1", "pass": True}}}
pathlib.Path(sys.argv[1], "tiny.json").write_text(json.dumps(figures))
"""


def section_of(child_args: list[str], monkeypatch, tmp_path) -> dict:
    monkeypatch.setattr(run.harness, "OUT_DIR", tmp_path)
    monkeypatch.setattr(run, "benchmark_command", lambda name, scale, repeat: child_args)
    return run.benchmark_run(
        "tiny", "postgres://postgres@127.0.0.1:5432/renotify_bench", None, None
    )


def test_a_benchmark_that_ran_gives_its_targets_and_figures_apart(monkeypatch, tmp_path):
    section = section_of(["-c", WRITES_FIGURES, str(tmp_path)], monkeypatch, tmp_path)

    assert (section["status"], section["exit_code"]) == ("ran", 0)
    assert section["targets"] == {"rows/s": {"measured": 5.0, "target": ">= 1", "pass": True}}
    assert section["figures"] == {"rows": 10}
    assert section["command"].startswith("-c ")


def test_a_benchmark_that_failed_is_recorded_as_failed_with_nothing_measured(monkeypatch, tmp_path):
    section = section_of(["-c", "raise SystemExit(3)"], monkeypatch, tmp_path)

    assert (section["status"], section["exit_code"]) == ("failed", 3)
    assert section["targets"] is None
    assert section["figures"] == {}
