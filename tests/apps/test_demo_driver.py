"""The ``make demo`` driver's reuse logic, with quick fake steps instead of real domain runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from apps.demo import STEPS, DemoStep, run_steps


def counting_step(name: str, domain: str, log: Path, output: Path | None = None, fail: bool = False) -> DemoStep:
    """A step that appends its name to ``log``, optionally creates ``output``, and optionally fails."""
    code = f"open({str(log)!r}, 'a').write({name!r} + '\\n')"
    if output is not None:
        code += f"; open({str(output)!r}, 'w').write('x')"
    if fail:
        code += "; raise SystemExit(3)"
    return DemoStep(name, domain, ("-c", code), (str(output),) if output is not None else ())


def runs_logged(log: Path) -> list[str]:
    return log.read_text().split() if log.is_file() else []


def test_a_second_demo_reuses_finished_steps(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    steps = (
        counting_step("a-train", "a", log, tmp_path / "a.out"),
        counting_step("a-embed", "a", log),
        counting_step("b-train", "b", log, tmp_path / "b.out"),
    )
    failed, seconds = run_steps(steps, python=sys.executable, markers=tmp_path / "markers")
    assert failed == [] and runs_logged(log) == ["a-train", "a-embed", "b-train"]
    assert all(seconds[s.name] > 0 for s in steps)

    failed, seconds = run_steps(steps, python=sys.executable, markers=tmp_path / "markers")
    assert failed == [] and runs_logged(log) == ["a-train", "a-embed", "b-train"]  # nothing ran again
    assert seconds == {"a-train": 0.0, "a-embed": 0.0, "b-train": 0.0}


def test_deleting_a_run_folder_redoes_that_step_and_its_domain_followers(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    steps = (
        counting_step("a-train", "a", log, tmp_path / "a.out"),
        counting_step("a-embed", "a", log),
        counting_step("b-train", "b", log, tmp_path / "b.out"),
    )
    run_steps(steps, python=sys.executable, markers=tmp_path / "markers")
    (tmp_path / "a.out").unlink()
    failed, _ = run_steps(steps, python=sys.executable, markers=tmp_path / "markers")
    assert failed == []
    assert runs_logged(log) == ["a-train", "a-embed", "b-train", "a-train", "a-embed"]


def test_a_failed_step_is_retried_and_blocks_only_its_own_domain(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    markers = tmp_path / "markers"
    broken = (
        counting_step("a-train", "a", log, tmp_path / "a.out", fail=True),
        counting_step("a-embed", "a", log),
        counting_step("b-train", "b", log, tmp_path / "b.out"),
    )
    failed, _ = run_steps(broken, python=sys.executable, markers=markers)
    assert failed == ["a-train", "a-embed"]
    assert runs_logged(log) == ["a-train", "b-train"]  # a-embed never ran on a failed training
    assert not (markers / "a-train.done").exists()

    fixed = (counting_step("a-train", "a", log, tmp_path / "a.out"), *broken[1:])
    failed, _ = run_steps(fixed, python=sys.executable, markers=markers)
    assert failed == []
    assert runs_logged(log) == ["a-train", "b-train", "a-train", "a-embed"]


def test_a_step_that_exits_zero_without_its_outputs_counts_as_failed(tmp_path: Path) -> None:
    step = DemoStep("quiet", "a", ("-c", "pass"), (str(tmp_path / "never-written"),))
    failed, _ = run_steps((step,), python=sys.executable, markers=tmp_path / "markers")
    assert failed == ["quiet"]
    assert not step.finished(tmp_path / "markers")


@pytest.mark.parametrize("domain", ["biomed", "astro", "news", "recsys"])
def test_every_explorer_page_gets_a_demo_step_that_writes_the_store(domain: str) -> None:
    writers = [s for s in STEPS if s.domain == domain and any(a.endswith((".embed", ".pretrain")) for a in s.argv)]
    assert writers, f"no demo step fills the store for the {domain} page"
    repo = Path(__file__).resolve().parents[2]
    modules = [a for s in STEPS if s.domain == domain for a in s.argv if a.startswith("domains.")]
    # ``python -m`` runs a module file or a package's ``__main__.py`` (e.g. domains.recsys.mnar).
    missing = [
        m
        for m in modules
        if not (repo / Path(*m.split("."))).with_suffix(".py").is_file()
        and not (repo / Path(*m.split(".")) / "__main__.py").is_file()
    ]
    assert not missing, f"demo steps name modules that do not exist: {missing}"
