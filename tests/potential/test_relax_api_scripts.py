"""The Python API as a script user meets it: the README example saved as a file and run, and a
script that starts worker processes without the ``__main__`` guard."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
REPOSITORY = README.parent

SWAPS = {
    '"SrTiO3", n=10, seed=0': '"Cu3Au", n=2, seed=0, steps=50',  # EMT knows Cu and Au; a short sample
    'potential="sevennet-0"': 'potential="emt"',
}
"""What the test changes in the README's example: a composition and potential EMT covers, and
a small sample."""


def readme_python_example() -> str:
    match = re.search(r"### Python API\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no Python API example"
    return match.group(1)


def run_script(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    environment = {"PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    environment.update({k: v for k, v in os.environ.items() if k in ("HOME", "DIFFCRYSTAL_CACHE")})
    return subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True, text=True,
                          env=environment, timeout=600)


def test_readme_python_example_runs_as_a_script(tmp_path):
    code = readme_python_example()
    for old, new in SWAPS.items():
        assert old in code, f"the README example no longer contains {old}"
        code = code.replace(old, new)
    code += "print('best', best.structure.composition.reduced_formula, best.energy_per_atom)\n"
    script = tmp_path / "example.py"  # no `if __name__ == "__main__":` guard, as in the README
    script.write_text(code)
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^best Cu3Au -?\d", done.stdout, re.M), done.stdout


def test_a_pool_whose_workers_all_die_raises(tmp_path):
    """Worker processes re-import an unguarded script and die while starting; relax must say
    so rather than return a list of failures."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""\
        from ase.build import bulk

        import diffcrystal

        structures = [bulk("Cu", "fcc", a=3.7, cubic=True), bulk("Au", "fcc", a=4.0, cubic=True)]
        results = diffcrystal.relax(structures, potential="emt", workers=2)
        print("returned", [r.status for r in results])
        """))
    done = run_script(script, tmp_path)
    assert done.returncode != 0 and "returned" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("diffcrystal.potential.relax.WorkersDied: every relaxation worker process died")
    assert 'if __name__ == "__main__":' in last and "workers=1" in last
