"""The run-directory schema: artifact paths and columns, keys, and configs as JSON."""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pandas as pd
import pytest

from arithinterp import schema
from arithinterp.runs import RunDir


def test_artifacts_know_their_paths_and_columns():
    assert schema.PATCHING.at("localize/a1") == "localize/a1/patching.parquet"
    assert schema.localize_key("carry2") == "localize/carry2"
    assert schema.probes_key("digits") == "probes/digits"
    assert schema.stage_family("localize/a1") == "localize" and schema.stage_family("model") \
        == "model"
    assert schema.experiments(["model", "localize/a1", "probes/x", "localize/b0"],
                              "localize") == ["a1", "b0"]
    for bad in ("", "a/b", "../x", " a"):
        with pytest.raises(ValueError, match="name must be"):
            schema.localize_key(bad)
    schema.KNOCKOUT.check_columns(list(schema.KNOCKOUT.columns) + ["acc_c0", "acc_c12"])
    with pytest.raises(ValueError, match=r"missing columns \['rank'\], unknown columns \['x'\]"):
        schema.RANKING.check_columns([c for c in schema.RANKING.columns if c != "rank"] + ["x"])
    assert schema.grid_key("z", False, "noise") == "z_all_noise"
    assert schema.prompt_keys("z_pos_denoise")["normalized"] == "z_pos_denoise.normalized"


def test_a_run_refuses_a_table_that_does_not_match_its_artifact(tmp_path):
    run = RunDir.create(tmp_path, "r", config={}, seeds={})
    with pytest.raises(ValueError, match="does not match the schema"):
        run.save(schema.EVAL_BY_CARRIES, schema.EVALUATE, pd.DataFrame({"n_carries": [0]}))
    assert not run.has(schema.EVAL_BY_CARRIES, schema.EVALUATE)
    table = pd.DataFrame({"n_carries": [0], "count": [3], "exact_match": [1.0]})
    run.save(schema.EVAL_BY_CARRIES, schema.EVALUATE, table)
    pd.testing.assert_frame_equal(run.load(schema.EVAL_BY_CARRIES, schema.EVALUATE), table)
    run.close()


class Shape(schema.Registered):
    """A test family of registered configs."""


@Shape.register
@dataclass(frozen=True)
class Circle(Shape):
    kind: ClassVar[str] = "circle"
    radius: float = 1.0


@Shape.register
@dataclass(frozen=True)
class Polygon(Shape):
    kind: ClassVar[str] = "polygon"
    sides: int = 3
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inner:
    size: Literal["small", "large"] = "small"
    weights: tuple[float, ...] = (1.0, 2.0)


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    shapes: tuple[Shape, ...] = ()
    best: Shape | None = None
    count: int | None = None
    flag: bool = False

    def __post_init__(self):
        if self.count is not None and self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


def test_configs_round_trip_through_json_with_their_kinds():
    cfg = Outer("x", Inner("large", (0.5,)), (Circle(2.0), Polygon(5, ("a", "b"))),
                best=Polygon(4), count=3, flag=True)
    data = schema.to_json(cfg)
    assert data["shapes"][1] == {"kind": "polygon", "sides": 5, "labels": ["a", "b"]}
    assert schema.from_json(Outer, data) == cfg
    assert schema.from_json(Outer, {"name": "y"}) == Outer("y")  # defaults fill in


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "extra": 1}, r"Outer: unknown keys \['extra'\]"),
    ({}, r"Outer: missing keys \['name'\]"),
    ({"name": 3}, "Outer.name: expected a string, got 3"),
    ({"name": "x", "count": True}, "Outer.count: expected an integer, got True"),
    ({"name": "x", "count": 1.5}, "Outer.count"),
    ({"name": "x", "flag": 1}, "Outer.flag: expected true or false"),
    ({"name": "x", "inner": {"size": "huge"}}, r"Outer.inner.size: expected one of \['small'"),
    ({"name": "x", "inner": {"weights": [1, "a"]}}, r"Outer.inner.weights\[1\]"),
    ({"name": "x", "inner": 3}, "Outer.inner: expected an object, got 3"),
    ({"name": "x", "shapes": [{"kind": "square"}]}, r"Outer.shapes\[0\].kind: expected one of "
                                                     r"\['circle', 'polygon'\]"),
    ({"name": "x", "shapes": [{"kind": "circle", "sides": 3}]}, r"unknown keys \['sides'\]"),
    ({"name": "x", "count": -1}, "Outer: count must be >= 0"),
])
def test_bad_config_json_names_the_field(data, message):
    with pytest.raises(ValueError, match=message) as e:
        schema.from_json(Outer, data)
    assert "\n" not in str(e.value)


def test_a_family_name_is_taken_once():
    with pytest.raises(ValueError, match="taken"):
        @Shape.register
        @dataclass(frozen=True)
        class Again(Shape):
            kind: ClassVar[str] = "circle"


def test_snapshot_names_round_trip(tmp_path):
    assert schema.snapshot_file(250) == "step_000250.safetensors"
    assert schema.snapshot_step(schema.snapshot_file(12_345)) == 12_345
    with pytest.raises(ValueError, match="not a snapshot file name"):
        schema.snapshot_step("step_1.pt")
    assert schema.snapshot_files(tmp_path / "none") == {}
    for step in (1000, 0, 250):
        (tmp_path / schema.snapshot_file(step)).write_bytes(b"")
    assert list(schema.snapshot_files(tmp_path)) == [0, 250, 1000]
