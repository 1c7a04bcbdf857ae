"""The benchmarks' own PostgreSQL: the end-to-end run uses deploy/postgresql.conf's
settings (what production runs), the fault run its fast throwaway ones. No server
starts here.

bench/ goes on sys.path at the end, as in test_bench_results."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

import private_services  # noqa: E402
import run  # noqa: E402


def test_the_end_to_end_server_runs_with_the_published_settings():
    settings = private_services.production_settings()
    assert settings["autovacuum"] == "on"
    assert settings["synchronous_commit"] == "on"
    assert "fsync" not in settings and "full_page_writes" not in settings  # on: the default


def test_settings_are_read_without_comments_or_quotes(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("# a comment\nwork_mem = 32MB   # per sort\n\nsearch_path = 'public'\n")
    assert private_services.production_settings(conf) == {
        "work_mem": "32MB",
        "search_path": "public",
        "log_min_messages": "warning",
    }


def test_the_fault_run_keeps_its_throwaway_server_and_two_hosts(tmp_path):
    server = private_services.PrivatePostgres(tmp_path)
    assert server.settings["fsync"] == "off"
    assert server.cpu_seconds() == 0.0  # not started
    assert run.benchmark_command("faults", None, None)[-2:] == ["--hosts", "2"]
