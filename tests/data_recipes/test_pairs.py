import json

import numpy as np
import pytest
from PIL import Image

from vlmrl.data_recipes.masks import decode_rle
from vlmrl.data_recipes.pairs import CHART_EDITS, FOLDER_EDITS, SHAPES_EDITS, pair_records, scan_image_folder
from vlmrl.data_recipes.recipe import RecipeError


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        coarse = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
        Image.fromarray(coarse).resize((120, 90), Image.BICUBIC).save(folder / f"photo{i}.png")
    Image.fromarray(rng.uniform(0, 255, size=(64, 80, 3)).astype(np.uint8)).save(folder / "sub" / "noise.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def assert_confined(record):
    a = np.asarray(record["image_a"]).astype(int)
    b = np.asarray(record["image_b"]).astype(int)
    edit = json.loads(record["edit"])
    region = decode_rle(edit["mask"])
    changed = (a != b).any(axis=-1)
    assert a.shape == b.shape and region.shape == changed.shape
    assert changed.any(), f"{record['id']} ({edit['kind']}) changed nothing"
    assert not (changed & ~region).any(), f"{record['id']} ({edit['kind']}) changed pixels outside its region"
    x0, y0, x1, y1 = edit["box"]
    ys, xs = np.nonzero(region)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1] == record["box"]
    assert edit["kind"] == record["edit_kind"] and edit["description"] == record["description"]
    # The edit is local: the region is a small part of the image.
    assert region.mean() < 0.5


def test_shapes_pairs_differ_only_inside_the_edit_region():
    records = list(pair_records("shapes", 20, seed=2, resolution=96))
    assert {r["edit_kind"] for r in records} == set(SHAPES_EDITS)
    for record in records:
        assert_confined(record)
        edit = json.loads(record["edit"])
        a, b = edit["scene_a"]["objects"], edit["scene_b"]["objects"]
        expected = {"remove": len(a) - 1, "add": len(a) + 1}.get(record["edit_kind"], len(a))
        assert len(b) == expected


def test_chart_pairs_differ_only_inside_the_edit_region():
    records = list(pair_records("charts", 6, seed=0, resolution=200))
    assert {r["edit_kind"] for r in records} == set(CHART_EDITS)
    for record in records:
        assert_confined(record)
        edit = json.loads(record["edit"])
        changed = [k for k in ("values", "labels", "colors") if edit["table_a"][k] != edit["table_b"][k]]
        assert len(changed) == 1


def test_folder_pairs_differ_only_inside_the_edit_region(image_folder):
    records = list(pair_records("folder", 16, seed=1, folder=image_folder))
    assert {r["edit_kind"] for r in records} == set(FOLDER_EDITS)
    assert {r["file"] for r in records} == {"photo0.png", "photo1.png", "photo2.png", "sub/noise.jpg"}
    for record in records:
        assert_confined(record)


def test_scan_lists_unreadable_images_and_rejects_empty_folders(image_folder, tmp_path):
    readable, unreadable = scan_image_folder(image_folder)
    assert len(readable) == 4
    assert len(unreadable) == 1 and "broken.jpg" in unreadable[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="no image files"):
        scan_image_folder(tmp_path / "empty")
    with pytest.raises(RecipeError, match="does not exist"):
        scan_image_folder(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"nope")
    with pytest.raises(RecipeError, match="all unreadable"):
        scan_image_folder(tmp_path / "bad")


def test_pairs_recipe_reports_skipped_images(image_folder, tmp_path):
    from vlmrl.data_recipes.pairs import PAIRS_RECIPE, PairsConfig
    from vlmrl.data_recipes.recipe import build, load_recipe_dataset

    config = PairsConfig(
        out=str(tmp_path / "out"), n=5, shard_size=3, source="folder", folder=str(image_folder)
    )
    manifest = build(PAIRS_RECIPE, config)
    assert manifest["skipped_count"] == 1 and "broken.jpg" in manifest["skipped"][0]
    dataset = load_recipe_dataset(tmp_path / "out")
    assert dataset[0]["image_b"].size == dataset[0]["image_a"].size
    with pytest.raises(RecipeError, match="--folder"):
        build(PAIRS_RECIPE, PairsConfig(out=str(tmp_path / "x"), n=2, source="folder"))
    with pytest.raises(RecipeError, match="--source"):
        build(PAIRS_RECIPE, PairsConfig(out=str(tmp_path / "y"), n=2, source="photos"))


def test_shapes_pairs_take_chosen_kinds_and_replace_two_objects():
    from vlmrl.data_recipes.pairs import shapes_pair

    recolors = [shapes_pair(i, 4, 96, 1, 2, kinds=("recolor",)) for i in range(3)]
    assert {r["edit_kind"] for r in recolors} == {"recolor"}
    for index in range(4):
        record = shapes_pair(index, 5, 96, 3, 6, kinds=("replace",))
        assert_confined(record)
        edit = json.loads(record["edit"])
        a, b = edit["scene_a"]["objects"], edit["scene_b"]["objects"]
        keys = ("shape", "color", "material")
        changed = [i for i, (x, y) in enumerate(zip(a, b)) if [x[k] for k in keys] != [y[k] for k in keys]]
        assert len(a) == len(b) and len(changed) == 2, record["description"]
        for i in changed:  # same place and size, a different object
            assert (a[i]["size"], a[i]["x"], a[i]["depth"]) == (b[i]["size"], b[i]["x"], b[i]["depth"])
    with pytest.raises(ValueError, match="shapes edit kinds"):
        shapes_pair(0, 0, kinds=("explode",))
