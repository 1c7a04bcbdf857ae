"""The published results: bench/results.json and bench/RESULTS.md, written by
``bench/run.py`` after each benchmark.

results.json holds ``{"runs": {run id: facts}, "benchmarks": {name: section}}``. A run
is one invocation of run.py (its date, commit, SCALE, load average and machine:
``preflight.run_facts``); a section is one benchmark's outcome in a run (status, wall
time, the command, its targets and the figures it saved). Recording a benchmark
replaces only its own section, so ``make bench BENCH=x`` updates x and keeps every
other benchmark with the run it was measured in; runs no section points at are
dropped. RESULTS.md is rendered from results.json alone, in a fixed order, so the same
results always give the same bytes.

Pure functions over dicts and files: no services, no Django (tests/test_bench_results.py).
"""

import json
import math
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
FIGURES_SHOWN = 24  # key figures per section in RESULTS.md; all of them are in results.json
FIGURES_DEPTH = 3  # nested dicts flattened this deep ("sink.rss_mb.100000")
MACHINE_ROWS = (
    ("cores", "cores"),
    ("cpu", "CPU"),
    ("memory_gib", "memory (GiB)"),
    ("kernel", "kernel"),
    ("python", "Python"),
    ("django", "Django"),
    ("celery", "Celery"),
    ("psycopg", "psycopg"),
    ("postgresql", "PostgreSQL"),
    ("redis", "Redis"),
)


def results_load(path: Path = RESULTS_JSON) -> dict:
    if not path.exists():
        return {"runs": {}, "benchmarks": {}}
    return json.loads(path.read_text())


def section_record(results: dict, *, run: dict, name: str, section: dict) -> dict:
    """``results`` with ``name``'s section replaced by ``section`` measured in ``run``."""
    benchmarks = {**results["benchmarks"], name: {**section, "run": run["id"]}}
    runs = {**results["runs"], run["id"]: run}
    used = {s["run"] for s in benchmarks.values()}
    return {
        "runs": {run_id: facts for run_id, facts in sorted(runs.items()) if run_id in used},
        "benchmarks": dict(sorted(benchmarks.items())),
    }


def results_write(
    results: dict,
    *,
    order: list[str],
    json_path: Path = RESULTS_JSON,
    md_path: Path = RESULTS_MD,
) -> None:
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown_render(results, order=order))


# --- Formatting ----------------------------------------------------------------------------


def value_fmt(value: object) -> str:
    """A figure as people read it: thousands separated, three significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if value is None:
        return "-"
    return str(value)


def _cell(value: object) -> str:
    return value_fmt(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def figures_flatten(figures: dict, prefix: str = "", depth: int = 1) -> list[tuple[str, object]]:
    """The scalar figures of a benchmark's JSON, nested keys joined with dots; lists (the
    rounds' raw values) and anything deeper than FIGURES_DEPTH stay in results.json."""
    flat: list[tuple[str, object]] = []
    for key, value in figures.items():
        if key == "targets" and not prefix:
            continue  # shown in their own table
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < FIGURES_DEPTH:
            flat += figures_flatten(value, f"{name}.", depth + 1)
        elif isinstance(value, (int, float, str)) or value is None:
            flat.append((name, value))
    return flat


def reproduce_command(name: str, scale: int | None) -> str:
    return f"{f'SCALE={scale} ' if scale else ''}make bench BENCH={name}"


def reproduce_lines(results: dict, order: list[str]) -> list[str]:
    """One command per benchmark, at the SCALE its published figures were measured at."""
    lines = []
    for name in names_ordered(results, order):
        section = results["benchmarks"].get(name)
        scale = results["runs"][section["run"]]["scale"] if section else None
        lines.append(f"- `{reproduce_command(name, scale)}`")
    return lines


def _when(run: dict) -> str:
    return run["id"].replace("T", " ").removesuffix("Z")


def _commit(run: dict) -> str:
    return run["commit"][:10] + (" (dirty)" if run["dirty"] else "")


def _scale(run: dict) -> str:
    return f"{run['scale']:,}" if run["scale"] else "default sizes"


# --- RESULTS.md ----------------------------------------------------------------------------


def names_ordered(results: dict, order: list[str]) -> list[str]:
    """run.py's order first (including those never run), then any others by name."""
    return list(order) + sorted(set(results["benchmarks"]) - set(order))


def summary_rows(results: dict, order: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name in names_ordered(results, order):
        section = results["benchmarks"].get(name)
        if section is None:
            rows.append([name, "(not run yet)", "", "", "", ""])
            continue
        when = _when(results["runs"][section["run"]])
        if section["status"] != "ran":
            rows.append([name, f"(failed: exit code {section['exit_code']})", "", "", "", when])
        elif not section.get("targets"):
            rows.append([name, "(no targets: figures only)", "", "", "", when])
        for target, result in (section.get("targets") or {}).items():
            verdict = "PASS" if result["pass"] else "**MISS**"
            rows.append([name, target, result["measured"], result["target"], verdict, when])
    return rows


def tally_line(results: dict, order: list[str]) -> str:
    """How many targets pass and miss, and how many benchmarks have no figures."""
    verdicts = [
        result["pass"]
        for section in results["benchmarks"].values()
        for result in (section.get("targets") or {}).values()
    ]
    failed = sum(s["status"] != "ran" for s in results["benchmarks"].values())
    never = sum(name not in results["benchmarks"] for name in order)
    return (
        f"{sum(verdicts)} of {len(verdicts)} targets met, {len(verdicts) - sum(verdicts)}"
        f" missed; benchmarks failed: {failed}, not run yet: {never}."
    )


def latest_run_line(results: dict) -> str:
    """Which benchmarks the latest invocation ran; the others are from earlier runs."""
    if not results["runs"]:
        return "Nothing has been measured yet."
    latest = max(results["runs"])
    sections = results["benchmarks"].items()
    ran = [name for name, s in sections if s["run"] == latest and s["status"] == "ran"]
    failed = [name for name, s in sections if s["run"] == latest and s["status"] != "ran"]
    return (
        f"The latest run ({_when(results['runs'][latest])} UTC) ran"
        f" {', '.join(ran) or 'nothing'}{'; failed: ' + ', '.join(failed) if failed else ''}."
        " Every other row was measured in an earlier run (its date in the last column) or"
        " not yet."
    )


def machines(results: dict) -> list[dict]:
    """The distinct machines of the runs, in the order they first appear (usually one)."""
    distinct: list[dict] = []
    for run in results["runs"].values():
        if run["machine"] not in distinct:
            distinct.append(run["machine"])
    return distinct


def runs_lines(results: dict) -> list[str]:
    """A row per run (what it ran, at which commit and SCALE), then a column per machine."""
    distinct = machines(results)
    several = len(distinct) > 1
    headers = ["run (UTC)", "commit", "SCALE", "load average before", "benchmarks"]
    rows: list[list[object]] = []
    for run_id, run in results["runs"].items():
        names = [n for n, section in results["benchmarks"].items() if section["run"] == run_id]
        row = [_when(run), _commit(run), _scale(run), " ".join(map(str, run["load_before"]))]
        rows.append([*row, ", ".join(names)])
        if several:
            rows[-1].append(f"machine {distinct.index(run['machine']) + 1}")
    lines = _table([*headers, "machine"] if several else headers, rows)
    machine_rows: list[list[object]] = []
    for key, label in MACHINE_ROWS:
        values = [machine.get(key) for machine in distinct]
        if key == "postgresql":  # "PostgreSQL 15.x (...) on <platform>, compiled by ..."
            values = [str(v).split(",")[0] for v in values]
        machine_rows.append([label, *values])
    columns = [f"machine {n}" for n in range(1, len(distinct) + 1)] if several else ["machine"]
    return [*lines, "", *_table(["", *columns], machine_rows)]


def section_lines(name: str, section: dict, run: dict) -> list[str]:
    lines = [f"### {name}", ""]
    status = "Ran" if section["status"] == "ran" else f"FAILED (exit code {section['exit_code']})"
    lines.append(
        f"{status} in {section['wall_seconds']:,.0f} s; measured {_when(run)} UTC at commit"
        f" {_commit(run)}, SCALE {_scale(run)}; load average before"
        f" {' '.join(map(str, section['load_before']))}."
    )
    lines += [
        "",
        f"Reproduce: `{reproduce_command(name, run['scale'])}` (runs `{section['command']}`).",
    ]
    targets = section.get("targets") or {}
    if targets:
        rows = [
            [t, r["measured"], r["target"], "PASS" if r["pass"] else "**MISS**"]
            for t, r in targets.items()
        ]
        lines += ["", *_table(["target", "measured", "goal", "result"], rows)]
    elif section["status"] == "ran":
        lines += ["", "No targets: figures only."]
    figures = figures_flatten(section.get("figures") or {})
    if figures:
        lines += ["", *_table(["figure", "value"], [list(f) for f in figures[:FIGURES_SHOWN]])]
        if len(figures) > FIGURES_SHOWN:
            lines += ["", f"({len(figures) - FIGURES_SHOWN} more in results.json)"]
    return [*lines, ""]


def markdown_render(results: dict, *, order: list[str]) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (bench/run.py) from bench/results.json: do not edit by hand."
        " What each benchmark measures, its floor and its targets: [README.md](README.md).",
        "",
        "`make bench` runs them all; `make bench BENCH=<name>` re-measures one and keeps the"
        " others as they were, so each section says when, at which commit and at which SCALE"
        " it was measured. `SCALE=N` runs a benchmark at N members or rows instead of its"
        " published size (see README.md, SCALE). To reproduce a benchmark's figures, as"
        " measured here:",
        "",
        *reproduce_lines(results, order),
        "",
        "## Summary",
        "",
        f"{tally_line(results, order)} {latest_run_line(results)}",
        "",
        *_table(
            ["benchmark", "target", "measured", "goal", "result", "measured at (UTC)"],
            summary_rows(results, order),
        ),
        "",
        "## Runs and machine",
        "",
        *runs_lines(results),
        "",
        "## Benchmarks",
        "",
    ]
    for name in names_ordered(results, order):
        section = results["benchmarks"].get(name)
        if section is None:
            lines += [f"### {name}", "", f"Not run yet: `{reproduce_command(name, None)}`.", ""]
        else:
            lines += section_lines(name, section, results["runs"][section["run"]])
    return "\n".join(lines).rstrip("\n") + "\n"
