"""Every command of the README's command-line tour runs, in smoke size, in order."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# flags appended per command to shrink it (a later flag wins over the README's own)
QUIET = ["--no-progress", "--device", "cpu"]
SMOKE = {
    "train": ["--steps", "5", "--n-test", "100", "--batch-size", "32", *QUIET],
    "eval": ["--n", "20", "--device", "cpu"],
    "localize": ["--pairs", "32", *QUIET],
    "probe": ["--n", "200", *QUIET],
    "demo": ["--n-eval", "100", *QUIET],
    "finetune": ["--n-random", "1", "--batch-size", "16", *QUIET],
}


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    tour = text.split("### Command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in tour.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line.startswith(".venv/bin/"):
            commands.append(shlex.split(line))
    return commands


def test_the_tour_has_its_commands():
    names = [c[1] if c[0].endswith("arithinterp") else Path(c[1]).name for c in
             readme_commands()]
    assert {"zoo", "eval", "demo", "localize", "train", "probe", "runs", "finetune", "sweep",
            "digit_probes.py"} <= set(names)


@pytest.mark.slow
def test_every_readme_command_runs_in_smoke_size(tmp_path):
    for argv in readme_commands():
        program, args = argv[0], argv[1:]
        # files of the repository (sweeps/formats.toml) from the temporary working folder
        args = [str(ROOT / a) if (ROOT / a).is_file() else a for a in args]
        if program.endswith("arithinterp"):
            cmd = [str(Path(sys.executable).parent / "arithinterp"), *args]
            cmd += SMOKE.get(args[0], [])
        else:  # .venv/bin/python probes/<script>.py ...
            cmd = [sys.executable, str(ROOT / args[0]), *args[1:], "--n", "100", "--no-progress"]
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                  "HOME": str(tmp_path)}, check=False)
        assert out.returncode == 0, f"{shlex.join(argv)}\n{out.stdout[-2000:]}{out.stderr}"
