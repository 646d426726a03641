"""`vlmrl demo`: load a model and answer questions about freshly generated scenes.

The main job of a fresh checkout: it shows, in a minute on a laptop CPU, that the embedded
tiny default sees and answers. Each scene's image is saved beside a JSON of the questions, the
model's answers and the ground truth.
"""

from __future__ import annotations

from pathlib import Path


def run_demo(model: str = "tiny", questions: int = 4, seed: int = 0, out: str = "runs/demo") -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    from vlmrl.data_recipes.shapes import shapes_qa_records
    from vlmrl.model import VLM, SamplingParams
    from vlmrl.model.formats import FormatFailure, parse_answer
    from vlmrl.model.tiny import is_pretrained
    from vlmrl.runs import atomic_write_json

    console = Console()
    if questions < 1:
        raise ValueError(f"questions must be at least 1, got {questions}")
    with console.status(f"loading {model}"):
        vlm = VLM.load(model)
    if model in ("tiny", "tiny-teacher") and not is_pretrained(model):
        console.print(
            f"[yellow]{model} is not pretrained in this checkout: answers come from random weights. "
            f"Run `vlmrl pretrain tiny --install` to build it.[/yellow]"
        )
    from vlmrl.model.tiny import IMAGE_SIZE

    records = list(shapes_qa_records(questions, seed=seed + 424242, resolution=IMAGE_SIZE))
    conversations = [
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": r["image"]}, {"type": "text", "text": r["question"]}],
            }
        ]
        for r in records
    ]
    with console.status("answering"):
        outputs = vlm.generate(conversations, SamplingParams(max_new_tokens=24, temperature=0))
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"vlmrl demo: {model} on generated scenes (seed {seed})")
    for column in ("image", "question", "model says", "truth", ""):
        table.add_column(column)
    results = []
    for record, output in zip(records, outputs):
        image_path = directory / f"{record['id']}.png"
        record["image"].save(image_path)
        answer = parse_answer(output.text)
        value = answer.reason if isinstance(answer, FormatFailure) else answer
        right = not isinstance(answer, FormatFailure) and answer.lower() == record["answer"].lower()
        table.add_row(
            image_path.name,
            record["question"],
            value,
            record["answer"],
            "[green]✓" if right else "[red]✗",
        )
        results.append(
            {
                "image": str(image_path),
                "question": record["question"],
                "output": output.text,
                "answer": value,
                "truth": record["answer"],
                "correct": right,
            }
        )
    console.print(table)
    correct = sum(r["correct"] for r in results)
    console.print(f"{correct}/{len(results)} correct. Images and answers are in {directory}/")
    atomic_write_json(directory / "answers.json", results)
    return results
