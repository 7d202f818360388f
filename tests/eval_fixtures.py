"""Tiny copies of the six benchmarks in their published HF ``datasets`` layouts (field names as on the Hub).

Used by the evaluation and registry tests: each writer produces a handful of rows with real field names,
either as a ``save_to_disk`` directory or as Hub-style parquet files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "cyan"]


def picture(i: int, size: int = 56) -> Image.Image:
    """A small deterministic picture: ``i % 4 + 1`` circles of one colour."""
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    for k in range(i % 4 + 1):
        draw.ellipse((4 + 12 * k, 20, 14 + 12 * k, 30), fill=COLORS[i % len(COLORS)])
    return im


def _save(rows: list[dict[str, Any]], features: Any, root: Path, split: str, layout: str) -> Path:
    import datasets

    ds = datasets.Dataset.from_list(rows, features=features)
    if layout == "disk":
        datasets.DatasetDict({split: ds}).save_to_disk(str(root))
    else:
        (root / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def write_mathvista(root: Path, layout: str = "parquet") -> Path:
    from datasets import Features, Image, List, Value

    rows = [
        {
            "pid": "1",
            "question": "Which shape is red?",
            "image": "images/1.jpg",
            "decoded_image": picture(0),
            "choices": ["circle", "square", "triangle"],
            "unit": None,
            "precision": None,
            "answer": "circle",
            "question_type": "multi_choice",
            "answer_type": "text",
            "metadata": {"category": "general-vqa", "task": "figure question answering"},
            "query": "Hint: answer with the option letter.\nQuestion: Which shape is red?\n"
            "Choices:\n(A) circle\n(B) square\n(C) triangle",
        },
        {
            "pid": "2",
            "question": "How many circles are there?",
            "image": "images/2.jpg",
            "decoded_image": picture(1),
            "choices": None,
            "unit": None,
            "precision": None,
            "answer": "2",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": {"category": "math-targeted-vqa", "task": "math word problem"},
            "query": "Hint: answer with an integer.\nQuestion: How many circles are there?",
        },
        {
            "pid": "3",
            "question": "What is the ratio?",
            "image": "images/3.jpg",
            "decoded_image": picture(2),
            "choices": None,
            "unit": None,
            "precision": 1.0,
            "answer": "0.5",
            "question_type": "free_form",
            "answer_type": "float",
            "metadata": {"category": "math-targeted-vqa", "task": "geometry problem solving"},
            "query": "Hint: answer with one decimal.\nQuestion: What is the ratio?",
        },
    ]
    features = Features(
        {
            "pid": Value("string"),
            "question": Value("string"),
            "image": Value("string"),
            "decoded_image": Image(),
            "choices": List(Value("string")),
            "unit": Value("string"),
            "precision": Value("float64"),
            "answer": Value("string"),
            "question_type": Value("string"),
            "answer_type": Value("string"),
            "metadata": {"category": Value("string"), "task": Value("string")},
            "query": Value("string"),
        }
    )
    return _save(rows, features, root, "testmini", layout)


def write_mathvision(root: Path, layout: str = "parquet") -> Path:
    from datasets import Features, Image, List, Value

    rows = [
        {
            "id": "1",
            "question": "<image1> Which colour?",
            "options": ["red", "green", "blue"],
            "image": "images/1.jpg",
            "decoded_image": picture(0),
            "answer": "A",
            "solution": None,
            "level": 1,
            "subject": "counting",
        },
        {
            "id": "2",
            "question": "<image1> How many circles?",
            "options": [],
            "image": "images/2.jpg",
            "decoded_image": picture(2),
            "answer": "3",
            "solution": None,
            "level": 2,
            "subject": "counting",
        },
    ]
    features = Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "options": List(Value("string")),
            "image": Value("string"),
            "decoded_image": Image(),
            "answer": Value("string"),
            "solution": Value("string"),
            "level": Value("int64"),
            "subject": Value("string"),
        }
    )
    return _save(rows, features, root, "test", layout)


def write_mathverse(root: Path, layout: str = "parquet") -> Path:
    from datasets import Features, Image, Value

    rows = []
    versions = ["Text Dominant", "Vision Only", "Vision Only", "Text Lite"]
    for i, version in enumerate(versions):
        mc = i % 2 == 1
        rows.append(
            {
                "sample_index": str(i + 1),
                "problem_index": str(i // 2 + 1),
                "problem_version": version,
                "question": "" if version == "Vision Only" else "Find the angle.",
                "image": picture(i),
                "answer": "B" if mc else "60",
                "question_type": "multi-choice" if mc else "free-form",
                "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
                "query_wo": "According to the question shown in the image, please directly answer the question.",
                "query_cot": "According to the question shown in the image, please first conduct reasoning.",
                "question_for_eval": "Find the angle.",
            }
        )
    features = Features(
        {
            "sample_index": Value("string"),
            "problem_index": Value("string"),
            "problem_version": Value("string"),
            "question": Value("string"),
            "image": Image(),
            "answer": Value("string"),
            "question_type": Value("string"),
            "metadata": {
                "split": Value("string"),
                "source": Value("string"),
                "subject": Value("string"),
                "subfield": Value("string"),
            },
            "query_wo": Value("string"),
            "query_cot": Value("string"),
            "question_for_eval": Value("string"),
        }
    )
    return _save(rows, features, root, "testmini", layout)


def write_dynamath(root: Path, layout: str = "disk", variants: int = 3, seeds: int = 2) -> Path:
    import datasets
    from datasets import Features, Image, Value

    features = Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "decoded_image": Image(),
            "ground_truth": Value("string"),
            "answer_type": Value("string"),
            "subject": Value("string"),
            "knowledge_level": Value("string"),
        }
    )
    splits = {}
    for v in range(1, variants + 1):
        rows = []
        for q in range(1, seeds + 1):
            mc = q % 2 == 0
            rows.append(
                {
                    "id": str(q),
                    "question": f"Seed {q} variant {v}: how many circles?" + ("\nA: 1\nB: 2" if mc else ""),
                    "decoded_image": picture(q + v),
                    "ground_truth": "B" if mc else str((q + v) % 4 + 1),
                    "answer_type": "multiple choice" if mc else "float",
                    "subject": "arithmetic",
                    "knowledge_level": "elementary school",
                }
            )
        splits[f"sample_variant{v}"] = datasets.Dataset.from_list(rows, features=features)
    if layout == "disk":
        datasets.DatasetDict(splits).save_to_disk(str(root))
    else:
        (root / "data").mkdir(parents=True, exist_ok=True)
        for name, ds in splits.items():
            ds.to_parquet(str(root / "data" / f"{name}-00000-of-00001.parquet"))
    return root


def write_wemath(root: Path, layout: str = "parquet") -> Path:
    from datasets import Features, Image, Value

    rows = []
    for pid, steps in (("1", 2), ("2", 3)):
        keys = [f"{steps}steps_{i}" for i in range(1, steps + 1)] + [f"{steps}steps_multi"]
        for j, key in enumerate(keys):
            rows.append(
                {
                    "ID": pid,
                    "split": "testmini",
                    "knowledge concept": "Angles",
                    "question": f"Problem {pid} part {key}: which angle?",
                    "option": "A. 30°;B. 45°;C. 60°;D. 90°",
                    "answer": "ABCD"[j % 4],
                    "image_path": picture(j),
                    "key": key,
                    "question number": j + 1,
                    "knowledge concept description": "Angles of triangles",
                }
            )
    features = Features(
        {
            "ID": Value("string"),
            "split": Value("string"),
            "knowledge concept": Value("string"),
            "question": Value("string"),
            "option": Value("string"),
            "answer": Value("string"),
            "image_path": Image(),
            "key": Value("string"),
            "question number": Value("int64"),
            "knowledge concept description": Value("string"),
        }
    )
    return _save(rows, features, root, "testmini", layout)


def write_logicvista(root: Path, layout: str = "parquet") -> Path:
    from datasets import Features, Image, Value

    rows = [
        {
            "index": "0",
            "question": "Which figure comes next?\nA. 1\nB. 2\nC. 3\nD. 4",
            "answer": "C",
            "image": picture(0),
            "skill": "inductive",
            "reasoning": "spatial",
        },
        {
            "index": "1",
            "question": "Which two are equal?\nA. x\nB. y\nC. z\nD. w",
            "answer": "A, C",
            "image": picture(1),
            "skill": "deductive",
            "reasoning": "numerical",
        },
    ]
    features = Features(
        {
            "index": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "image": Image(),
            "skill": Value("string"),
            "reasoning": Value("string"),
        }
    )
    return _save(rows, features, root, "test", layout)


WRITERS = {
    "mathvista": write_mathvista,
    "mathvision": write_mathvision,
    "mathverse": write_mathverse,
    "dynamath": write_dynamath,
    "wemath": write_wemath,
    "logicvista": write_logicvista,
}


def write_all(root: Path) -> dict[str, Path]:
    """All six benchmark copies under ``root/<name>``."""
    return {name: writer(root / name) for name, writer in WRITERS.items()}


def mlflow_db_template(directory: Path) -> Path:
    """An MLflow sqlite database with its schema created (migrations take seconds; copies are instant)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = directory / "template.db"
    store = SqlAlchemyStore(f"sqlite:///{db}", str(directory / "artifacts"))
    store.engine.dispose()
    return db


def use_mlflow_db(template: Path, tmp_path: Path, monkeypatch: Any) -> str:
    """Point MLflow at a fresh copy of ``template`` in ``tmp_path`` (and run from there: ./mlruns is local)."""
    import shutil

    db = tmp_path / "mlflow.db"
    shutil.copy(template, db)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in (
        "THINKFLOW_PARENT_RUN_ID",
        "MLFLOW_PARENT_RUN_ID",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_REGISTRY_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    return uri
