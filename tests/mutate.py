"""Mutation testing of the core modules with mutmut: `./dev mutate [module ...]`.

Each module is mutated on its own, in a scratch copy of the checkout (`.mutmut/<module>/`), so the
checkout itself is never touched; every mutant runs the unit tests that reach the mutated function
(mutmut's own selection), one child at a time unless `--children` says otherwise. The score is
killed ÷ (mutants − survivors judged equivalent in docs/TESTING.md); the survivors not judged
there are printed with their diffs, and written to `.mutmut/<module>/survivors.txt`.
Not part of `./dev test` or CI: a module takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("webui/drivers/vici_messages.py", "webui/forms.py", "webui/drivers/nft_rules.py",
        "webui/store.py", "webui/auth.py")
# The unit tests that are about each module (its own file and the behaviour tests that reach
# it). A mutant counts as killed only by these, so a score is a lower bound; `--all-tests` runs
# every unit test that reaches the mutated function instead, which is slower by far: the store
# and the form are reached by almost every HTTP test.
TESTS = {
    "webui/drivers/vici_messages.py": ("test_vici_messages", "test_failure_reasons",
                                       "test_properties", "test_remote_config",
                                       "test_vici_transport", "test_capabilities",
                                       "test_refusal"),
    "webui/forms.py": ("test_validation", "test_messages", "test_round_trip", "test_properties",
                       "test_capabilities", "test_refusal", "test_login", "test_feedback",
                       "test_auth_rules"),
    "webui/drivers/nft_rules.py": ("test_nft_rules", "test_nft_transaction"),
    "webui/store.py": ("test_store", "test_properties", "test_round_trip", "test_peers",
                       "test_apply"),
    "webui/auth.py": ("test_auth_rules", "test_auth", "test_login", "test_api_auth",
                      "test_hardening", "test_hardening_web"),
}
TESTING = ROOT / "docs" / "TESTING.md"
COPIED = ("webui", "tests", "pytest.ini", "run.py")
DETECTED = {1, 3, 36, 24, -24, 152, 255}  # mutmut's exit codes for killed and timed out
TIMED_OUT = {36, 24, -24, 152, 255}
MUTANT_NAME = re.compile(r"`(webui\.[\w.ǁ]+__mutmut_\d+)`")


def equivalents() -> set[str]:
    """Mutant names that docs/TESTING.md judges equivalent (each listed there with why)."""
    if not TESTING.exists():
        return set()
    return set(MUTANT_NAME.findall(TESTING.read_text()))


def test_selection(module: str, all_tests: bool) -> list[str]:
    if all_tests or module not in TESTS:
        return ["tests/unit"]
    return [f"tests/unit/{name}.py" for name in TESTS[module]
            if (ROOT / "tests" / "unit" / f"{name}.py").exists()]


def scratch_copy(module: str, tests: list[str]) -> Path:
    scratch = ROOT / ".mutmut" / Path(module).stem
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=ignore)
        else:
            shutil.copy2(source, scratch / name)
    (scratch / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = webui\n"
        f"only_mutate = {module}\n"
        "also_copy =\n    pytest.ini\n    run.py\n"
        "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in tests) +
        "pytest_add_cli_args = -p no:cacheprovider\n"
        # mutmut's limit is 15x the tests' own time; on a shared machine a surviving mutant's run
        # can take longer than that for no fault of its own, and would be counted as a hang.
        "timeout_multiplier = 60\n")
    return scratch


def results(scratch: Path, module: str) -> dict[str, int | None]:
    meta = scratch / "mutants" / (module + ".meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    rechecked = scratch / "recheck.json"
    if rechecked.exists():
        codes.update(json.loads(rechecked.read_text()))
    return codes


def recheck(module: str) -> None:
    """Run the survivors of the last run of `module` again, against the unit test files changed
    since (tests only grow, so a mutant killed then is killed now). The run's mutated copy is
    used as it is: valid while the module itself is unchanged, which is checked first."""
    scratch = ROOT / ".mutmut" / Path(module).stem
    if (scratch / module).read_bytes() != (ROOT / module).read_bytes():
        sys.exit(f"{module} changed since its last run: run it again, not --recheck")
    changed = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT)
        old = scratch / "mutants" / rel
        if not old.exists() or old.read_bytes() != path.read_bytes():
            changed.append(rel)
            for base in (scratch, scratch / "mutants"):
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, base / rel)
    selected = set(test_selection(module, all_tests=False))
    files = [str(r) for r in changed if str(r) in selected or selected == {"tests/unit"}
             and r.parts[:2] == ("tests", "unit") and r.name.startswith("test_")]
    codes = results(scratch, module)
    judged = equivalents()
    survivors = sorted(n for n, c in codes.items()
                       if c is not None and c not in DETECTED and n not in judged)
    print(f"rechecking {len(survivors)} survivors of {module} against {', '.join(files) or 'nothing'}")

    def run(name: str) -> int:
        env = dict(os.environ, MUTANT_UNDER_TEST=name)
        return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "--rootdir=.", *files], cwd=scratch / "mutants", env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    if files and run("") != 0:
        sys.exit("the changed tests fail without any mutant: fix them first")
    if not files:
        survivors = []
    done = json.loads((scratch / "recheck.json").read_text()) if (scratch / "recheck.json").exists() else {}
    for name in survivors:
        code = run(name)
        if code not in (0, 5):
            done[name] = 1
            print(f"  killed now: {name}", flush=True)
        (scratch / "recheck.json").write_text(json.dumps(done, indent=1))
    # A timeout may be the machine, not the mutant (a run paused, a loaded box): each is run once
    # more against all of the module's tests, with no time limit, and counts by that result.
    every = test_selection(module, all_tests=False)
    for name in sorted(n for n, c in codes.items() if c in TIMED_OUT):
        env = dict(os.environ, MUTANT_UNDER_TEST=name)
        code = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "--rootdir=.", *every], cwd=scratch / "mutants", env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        done[name] = 1 if code not in (0, 5) else 0
        print(f"  timed out before, {'killed' if done[name] else 'SURVIVES'} now: {name}", flush=True)
        (scratch / "recheck.json").write_text(json.dumps(done, indent=1))


def show(scratch: Path, name: str) -> str:
    found = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=scratch,
                           capture_output=True, text=True)
    return found.stdout.strip()


def mutate(module: str, children: int, all_tests: bool, resume: bool = False,
           summary_only: bool = False) -> dict:
    scratch = ROOT / ".mutmut" / Path(module).stem
    if not (resume or summary_only) or not (scratch / "setup.cfg").exists():
        scratch = scratch_copy(module, test_selection(module, all_tests))
    started = time.monotonic()
    if not summary_only:
        # tests/mutant_order.py: a mutant's tests likeliest to fail first, so a killed mutant
        # stops early (the same tests run; a survivor runs them all). Through the environment,
        # not mutmut's settings, whose change would throw a stopped run's results away.
        env = dict(os.environ, PYTEST_PLUGINS="tests.mutant_order")
        with open(scratch / "mutmut.log", "a" if resume else "w") as log:
            subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
                           cwd=scratch, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.monotonic() - started
    codes = results(scratch, module)
    not_run = [n for n, c in codes.items() if c is None]
    codes = {n: c for n, c in codes.items() if c is not None}
    # A mutant that makes the tests hang (mutmut's "timeout") is caught as surely as one that
    # makes them fail: a test run that never ends is a red build.
    killed = [n for n, c in codes.items() if c in DETECTED]
    timed_out = sorted(n for n, c in codes.items() if c in TIMED_OUT)
    survived = sorted(n for n, c in codes.items() if c not in DETECTED)
    judged = equivalents()
    equivalent = [n for n in survived if n in judged]
    open_survivors = [n for n in survived if n not in judged]
    counted = len(codes) - len(equivalent)
    score = 100.0 * len(killed) / counted if counted else 100.0
    with open(scratch / "survivors.txt", "w") as out:
        for name in open_survivors:
            out.write(show(scratch, name) + "\n\n")
    return {"module": module, "mutants": len(codes), "killed": len(killed),
            "equivalent": len(equivalent), "survived": len(open_survivors), "score": score,
            "seconds": seconds, "survivors": scratch / "survivors.txt",
            "stale": sorted(judged & set(killed)), "timed_out": timed_out, "not_run": len(not_run)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", default=CORE,
                        help="paths such as webui/store.py (default: the core modules)")
    parser.add_argument("--children", type=int, default=1,
                        help="mutants run at once (default 1: the machine is shared)")
    parser.add_argument("--all-tests", action="store_true",
                        help="count kills by any unit test, not only the module's own")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the last run of each module (same tests), not a new one")
    parser.add_argument("--recheck", action="store_true",
                        help="run the last run's survivors against the tests changed since")
    parser.add_argument("--summary", action="store_true",
                        help="only print the scores of the last runs")
    args = parser.parse_args(argv)
    rows, missing = [], []
    for module in args.modules:
        if not (ROOT / module).is_file():
            parser.error(f"no such module: {module}")
        scratch = ROOT / ".mutmut" / Path(module).stem
        if args.summary and not (scratch / "mutants" / (module + ".meta")).exists():
            print(f"{module}: no run in this checkout: `./dev mutate {module}` measures it",
                  flush=True)
            missing.append(module)
            continue
        if args.summary and (scratch / module).read_bytes() != (ROOT / module).read_bytes():
            print(f"{module} changed since its last run: the score below is of the code then",
                  flush=True)
        if args.recheck:
            recheck(module)
        print(f"{module}, its last run:" if args.summary or args.recheck else f"mutating {module} ...",
              flush=True)
        row = mutate(module, args.children, args.all_tests, args.resume,
                     summary_only=args.recheck or args.summary)
        rows.append(row)
        print(f"  {row['mutants']} mutants, {row['killed']} killed, {row['equivalent']} judged "
              f"equivalent, {row['survived']} survived: {row['score']:.1f} % "
              f"({row['seconds']:.0f} s); survivors in {row['survivors'].relative_to(ROOT)}",
              flush=True)
        if row["not_run"]:
            print(f"  {row['not_run']} mutants not run yet (the run was stopped): "
                  "`--resume` goes on with them", flush=True)
        for name in row["timed_out"]:
            print(f"  timed out (counted as detected; check it hangs for a reason): {name}")
        for name in row["stale"]:
            print(f"  listed as equivalent in docs/TESTING.md but killed now: {name}")
    print("\n| module | mutants run | detected | equivalent | survived | score | not run |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['equivalent']} | "
              f"{r['survived']} | {r['score']:.1f} % | {r['not_run']} |")
    return 0 if not missing and all(r["score"] >= 90 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
