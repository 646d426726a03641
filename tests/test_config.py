"""Config dataclasses: YAML loading with clear errors, and CLI flags built from the fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from vlmrl.config import ConfigError, command, from_dict, load_yaml, option, to_dict, to_yaml


@dataclasses.dataclass
class TrainSettings:
    """Train a model (a config of every kind of field the suite uses)."""

    model: str = option("tiny", help="Model spec.")
    steps: int = option(10, help="Optimizer steps.")
    learning_rate: float = option(1e-3, help="Peak learning rate.")
    use_lora: bool = option(False, help="Train LoRA adapters only.")
    tags: list[str] = option(help="Labels for the run.", factory=list)
    group_sizes: list[int] = option(help="Samples per prompt, per stage.", factory=lambda: [8])
    output: Path = option(Path("runs/train"), help="Run directory.")
    seed: int | None = option(None, help="Random seed; none draws one.")


def write_yaml(path: Path, values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


# --------------------------------------------------------------------------- from_dict / YAML


def test_from_dict_coerces_values_to_the_field_types():
    config = from_dict(
        TrainSettings,
        {
            "steps": "25",
            "learning_rate": 1,
            "use_lora": "yes",
            "tags": "a,b",
            "group_sizes": ["4", 2],
            "output": "runs/x",
            "seed": None,
        },
    )
    assert config.steps == 25 and isinstance(config.steps, int)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.use_lora is True
    assert config.tags == ["a", "b"]
    assert config.group_sizes == [4, 2]
    assert config.output == Path("runs/x")
    assert config.seed is None
    assert config.model == "tiny"  # absent keys keep their defaults


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": "many"}, r"'steps' = 'many' is not a valid int"),
        ({"steps": 2.5}, r"'steps' = 2.5 is not a valid int"),
        ({"steps": True}, r"'steps' = True is not a valid int"),
        ({"learning_rate": "fast"}, r"'learning_rate' = 'fast' is not a valid float"),
        ({"use_lora": "maybe"}, r"'use_lora' = 'maybe' is not a valid bool"),
        ({"use_lora": 1}, r"'use_lora' = 1 is not a valid bool"),
        ({"group_sizes": {"a": 1}}, r"'group_sizes' = \{'a': 1\} is not a valid list"),
        ({"group_sizes": [1, "x"]}, r"'group_sizes' = \[1, 'x'\] is not a valid list"),
        ({"model": ["a"]}, r"'model' = \['a'\] is not a valid str"),
        ({"steps": None}, r"'steps' is null but expects int"),
    ],
)
def test_wrong_types_name_the_field_and_the_expected_type(values, message):
    with pytest.raises(ConfigError, match=r"^my source: " + message):
        from_dict(TrainSettings, values, source="my source")


def test_unknown_keys_are_listed_with_the_known_ones():
    with pytest.raises(ConfigError) as error:
        from_dict(TrainSettings, {"step": 3, "lr": 0.1, "steps": 4}, source="train.yaml")
    message = str(error.value)
    assert message.startswith("train.yaml: unknown option(s) ['lr', 'step']")
    assert "known options are" in message and "'learning_rate'" in message and "'steps'" in message


def test_yaml_loading_and_its_errors(tmp_path):
    path = write_yaml(tmp_path / "train.yaml", {"steps": 7, "tags": ["x"], "seed": 3})
    config = load_yaml(TrainSettings, path)
    assert (config.steps, config.tags, config.seed) == (7, ["x"], 3)

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(TrainSettings, empty) == TrainSettings()

    with pytest.raises(ConfigError, match=r"config file .*absent.yaml does not exist"):
        load_yaml(TrainSettings, tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1, 2\nmodel: tiny\n")
    with pytest.raises(ConfigError, match=r"config file .*broken.yaml is not valid YAML"):
        load_yaml(TrainSettings, broken)
    listing = write_yaml(tmp_path / "list.yaml", [1, 2])
    with pytest.raises(
        ConfigError, match=r"list.yaml: expected a mapping of option names to values, got list"
    ):
        load_yaml(TrainSettings, listing)
    unknown = write_yaml(tmp_path / "unknown.yaml", {"stepz": 3})
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown option\(s\) \['stepz'\]"):
        load_yaml(TrainSettings, unknown)
    wrong = write_yaml(tmp_path / "wrong.yaml", {"learning_rate": "fast"})
    with pytest.raises(ConfigError, match=r"wrong.yaml: 'learning_rate' = 'fast' is not a valid float"):
        load_yaml(TrainSettings, wrong)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = TrainSettings(steps=3, tags=["a", "b"], output=Path("runs/y"), seed=5, use_lora=True)
    assert to_dict(config)["output"] == "runs/y"  # plain YAML types only
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(config))
    assert load_yaml(TrainSettings, path) == config


# --------------------------------------------------------------------------- CLI


def make_app(received: list) -> typer.Typer:
    app = typer.Typer()

    @command(app, TrainSettings, name="train")
    def train(config: TrainSettings) -> None:
        received.append(config)

    @app.command()
    def other() -> None:  # a second command, so typer keeps "train" as a subcommand
        pass

    return app


def invoke(arguments: list[str]) -> tuple[object, list]:
    received: list = []
    # wide terminal: rich would otherwise fold long paths inside error messages
    result = CliRunner().invoke(make_app(received), arguments, env={"COLUMNS": "400"})
    return result, received


def test_flags_map_to_fields_with_their_help():
    result, _ = invoke(["train", "--help"])
    assert result.exit_code == 0, result.output
    for flag in (
        "--model",
        "--steps",
        "--learning-rate",
        "--use-lora",
        "--no-use-lora",
        "--tags",
        "--group-sizes",
    ):
        assert flag in result.output
    for help_text in ("Optimizer steps.", "Peak learning rate.", "Train LoRA adapters only.", "--config"):
        assert help_text in result.output


def test_defaults_then_yaml_then_flags(tmp_path):
    result, received = invoke(["train"])
    assert result.exit_code == 0, result.output
    assert received == [TrainSettings()]

    path = write_yaml(
        tmp_path / "train.yaml",
        {"steps": 7, "learning_rate": 0.5, "use_lora": True, "tags": ["from-yaml"], "model": "big"},
    )
    result, received = invoke(["train", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert received == [
        TrainSettings(model="big", steps=7, learning_rate=0.5, use_lora=True, tags=["from-yaml"])
    ]

    # flags given on the command line win over the file; the rest still comes from the file
    result, received = invoke(
        [
            "train",
            "--config",
            str(path),
            "--steps",
            "9",
            "--no-use-lora",
            "--tags",
            "a",
            "--tags",
            "b",
            "--seed",
            "4",
        ]
    )
    assert result.exit_code == 0, result.output
    (config,) = received
    assert (config.steps, config.use_lora, config.tags, config.seed) == (9, False, ["a", "b"], 4)
    assert (config.model, config.learning_rate) == ("big", 0.5)
    # a flag equal to the default still counts as given
    result, received = invoke(["train", "--config", str(path), "--steps", "10"])
    assert received[0].steps == 10


def plain(output: str) -> str:
    """The CLI's error text without rich's box drawing and line wrapping."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_cli_rejects_bad_values_and_bad_files(tmp_path):
    result, received = invoke(["train", "--steps", "many"])
    assert result.exit_code == 2 and not received
    assert "Invalid value for '--steps'" in plain(result.output) and "integer" in plain(result.output)

    unknown = write_yaml(tmp_path / "unknown.yaml", {"stepz": 3})
    result, received = invoke(["train", "--config", str(unknown)])
    assert result.exit_code == 2 and not received
    text = plain(result.output)
    assert "Invalid value for '--config'" in text and "unknown option(s) ['stepz']" in text

    wrong = write_yaml(tmp_path / "wrong.yaml", {"steps": "lots"})
    result, received = invoke(["train", "--config", str(wrong)])
    assert result.exit_code == 2 and not received
    assert "'steps' = 'lots' is not a valid int" in plain(result.output)

    result, received = invoke(["train", "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and not received
    assert f"config file {tmp_path / 'absent.yaml'} does not exist" in plain(result.output)


def test_bundled_config_names(tmp_path):
    bundled = tmp_path / "configs"
    bundled.mkdir()
    write_yaml(bundled / "big-model.yaml", {"steps": 77, "model": "big"})
    app = typer.Typer()
    received = []
    command(app, TrainSettings, name="train", bundled=bundled)(received.append)
    command(app, TrainSettings, name="other")(received.append)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", "big-model"])
    assert result.exit_code == 0, result.output
    assert (received[-1].steps, received[-1].model) == (77, "big")
    own = write_yaml(tmp_path / "own.yaml", {"steps": 3})
    assert runner.invoke(app, ["train", "--config", str(own)]).exit_code == 0 and received[-1].steps == 3
    result = runner.invoke(app, ["train", "--config", "nope"])
    assert result.exit_code != 0 and "big-model" in plain(result.output)
