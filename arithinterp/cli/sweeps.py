"""The sweep command: run a TOML spec's trials on Ray (or serially), or print their status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arithinterp.cli.common import (
    Device,
    Progress,
    RunsDir,
    app,
    make_ctx,
    out,
    rich_table,
    user_errors,
)

SHOWN = ("trial", "status", "exact_match", "steps", "steps_to_target", "wall_seconds", "error")


@app.command("sweep")
def sweep_cmd(
    spec: Annotated[Path, typer.Argument(help="A sweep spec (TOML), e.g. sweeps/formats.toml.")],
    status: Annotated[bool, typer.Option(
        "--status", help="Print the trials' status and results; run nothing.")] = False,
    serial: Annotated[bool, typer.Option(
        "--serial", help="Run the trials one after another in this process, without Ray.")
    ] = False,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Trials at once on the local Ray (default: one per CPU).")] = None,
    address: Annotated[str | None, typer.Option(
        help="Join this Ray cluster (e.g. auto, or HEAD:6379) instead of starting one.")
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    device: Device = "cpu",
    progress: Progress = True,
) -> None:
    """Run a sweep: every combination of the spec's axes is a trial (a normal run, named
    from its values); complete trials are skipped, interrupted ones resume, a failing one is
    recorded and the others go on. The results table goes into <name>-sweep."""
    from arithinterp.sweeps.results import results_table
    from arithinterp.sweeps.run import run_sweep
    from arithinterp.sweeps.spec import load_spec

    with user_errors():
        sweep = load_spec(spec)
        if serial and address:
            raise ValueError("--serial runs without Ray: drop --address")
        if status:
            table = results_table(sweep, runs_dir)
        else:
            make_ctx(device, progress)  # a bad device fails before anything runs
            try:
                table = run_sweep(sweep, runs_dir, backend="serial" if serial else "ray",
                                  workers=workers, address=address, device=device,
                                  progress=progress,
                                  on_start=lambda s: out.print(f"Ray started in {s:.1f} s"))
            except KeyboardInterrupt:
                left = results_table(sweep, runs_dir)
                done = int((left["status"] == "done").sum())
                typer.echo(f"interrupted: {done} of {len(left)} trials complete; run the same "
                           "command again to continue", err=True)
                raise typer.Exit(130) from None
    cols = [c for c in (*SHOWN[:2], *sweep.axes, *SHOWN[2:]) if c in table.columns]
    counts = table["status"].value_counts().to_dict()
    shown = table[cols].astype(object).where(table[cols].notna(), "")
    out.print(rich_table(f"sweep {sweep.name}: " + ", ".join(f"{n} {s}" for s, n in
                                                          counts.items()), shown))
    if not status:
        out.print(f"results written to {Path(runs_dir) / sweep.report_name}")
