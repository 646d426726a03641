import dataclasses
import json

import pytest

from vlmrl.data_recipes import recipe as machinery
from vlmrl.data_recipes.recipe import RecipeError, build, load_recipe_dataset
from vlmrl.data_recipes.shapes import SHAPES_RECIPE, ShapesConfig


def config(tmp_path, name="out", **overrides):
    values = dict(out=str(tmp_path / name), n=10, seed=4, shard_size=4, resolution=32, max_objects=5)
    values.update(overrides)
    return ShapesConfig(**values)


def checksums(manifest):
    return [shard["sha256"] for shard in manifest["shards"]]


def test_build_writes_dataset_manifest_and_contact_sheet(tmp_path):
    manifest = build(SHAPES_RECIPE, config(tmp_path))
    out = tmp_path / "out"
    assert (out / "contact_sheet.png").stat().st_size > 1000
    assert manifest["counts"]["records"] == 10 and manifest["counts"]["shards"] == 3
    assert [s["records"] for s in manifest["shards"]] == [[0, 4], [4, 8], [8, 10]]
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    dataset = load_recipe_dataset(out, verify_checksums=True)
    assert len(dataset) == 10
    assert dataset.features["image"].__class__.__name__ == "Image"
    row = dataset[7]
    assert row["id"] == "shapes-4-7" and row["image"].size == (32, 32)
    objects = json.loads(row["scene"])["objects"]
    assert all("rle" in o and "box" in o for o in objects)


def test_same_arguments_give_identical_checksums_with_any_worker_count(tmp_path):
    first = build(SHAPES_RECIPE, config(tmp_path, "a"))
    second = build(SHAPES_RECIPE, config(tmp_path, "b", workers=2))
    assert checksums(first) == checksums(second)
    third = build(SHAPES_RECIPE, config(tmp_path, "c", seed=5))
    assert checksums(third)[0] != checksums(first)[0]


def test_resume_after_a_kill_keeps_finished_shards(tmp_path, monkeypatch):
    reference = build(SHAPES_RECIPE, config(tmp_path, "reference"))
    original = SHAPES_RECIPE.record

    def dies_at_record_six(index, cfg):
        if index == 6:
            raise KeyboardInterrupt  # what a kill looks like from inside the loop
        return original(index, cfg)

    killed = dataclasses.replace(SHAPES_RECIPE, record=dies_at_record_six)
    with pytest.raises(KeyboardInterrupt):
        build(killed, config(tmp_path))
    out = tmp_path / "out"
    assert (out / "shards" / "shard-00000.json").exists()
    assert not (out / "shards" / "shard-00001.arrow").exists()
    assert not (out / "manifest.json").exists()
    with pytest.raises(RecipeError, match="no manifest.json"):
        load_recipe_dataset(out)

    made = []

    def counting(index, cfg):
        made.append(index)
        return original(index, cfg)

    resumed = build(dataclasses.replace(SHAPES_RECIPE, record=counting), config(tmp_path))
    assert made == list(range(4, 10))  # shard 0 was kept, nothing made twice
    assert checksums(resumed) == checksums(reference)


def test_a_corrupted_shard_is_regenerated(tmp_path):
    reference = build(SHAPES_RECIPE, config(tmp_path))
    shard = tmp_path / "out" / "shards" / "shard-00001.arrow"
    shard.write_bytes(b"torn" + shard.read_bytes()[4:])
    with pytest.raises(RecipeError, match="sha256"):
        load_recipe_dataset(tmp_path / "out", verify_checksums=True)
    again = build(SHAPES_RECIPE, config(tmp_path))
    assert checksums(again) == checksums(reference)
    load_recipe_dataset(tmp_path / "out", verify_checksums=True)


def test_other_parameters_in_the_same_directory_are_refused(tmp_path):
    build(SHAPES_RECIPE, config(tmp_path))
    with pytest.raises(RecipeError, match="other parameters"):
        build(SHAPES_RECIPE, config(tmp_path, seed=9))
    manifest = build(SHAPES_RECIPE, config(tmp_path, seed=9, overwrite=True))
    assert manifest["seed"] == 9


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(RecipeError, match="not a directory"):
        load_recipe_dataset(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_recipe_dataset(tmp_path / "bad")
    (tmp_path / "bad" / "manifest.json").write_text('{"recipe": "shapes"}')
    with pytest.raises(RecipeError, match="lacks"):
        load_recipe_dataset(tmp_path / "bad")
    build(SHAPES_RECIPE, config(tmp_path))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["n"] = 11
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecipeError, match="holds 10 records"):
        load_recipe_dataset(tmp_path / "out")


def test_bad_sizes_raise(tmp_path):
    with pytest.raises(RecipeError, match="--n"):
        build(SHAPES_RECIPE, config(tmp_path, n=0))
    with pytest.raises(RecipeError, match="--shard-size"):
        machinery.shard_ranges(5, 0)


def test_cli_runs_the_recipe(tmp_path):
    from typer.testing import CliRunner

    from vlmrl.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(out), "--n", "3", "--resolution", "32"])
    assert result.exit_code == 0, result.output
    assert len(load_recipe_dataset(out)) == 3
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(out), "--n", "3", "--seed", "2"])
    assert result.exit_code == 2 and "other parameters" in result.output
