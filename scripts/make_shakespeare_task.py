"""Write a small offline lm-eval task from the embedded corpus's validation plays.

    python scripts/make_shakespeare_task.py --out tasks/
    python -m src.lm_eval ckpt=<run> tasks=[tasks/shakespeare_next_line.yaml] limit=200

`shakespeare_next_line` (multiple choice, chance 25%): two consecutive verse lines as the
context, the true next line against three lines drawn from elsewhere in the same play.
The validation plays are never trained on, so this is held-out text for every run of the
embedded corpus. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

YAML = """task: shakespeare_next_line
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def verse_lines(play: str) -> list[str]:
    """Indented-free spoken lines of 20-80 characters (speaker names and stage directions
    are short or bracketed; they are left out)."""
    out = []
    for line in play.splitlines():
        text = line.strip()
        if 20 <= len(text) <= 80 and not text.isupper() and not text.startswith(("[", "Enter",
                                                                                   "Exit", "ACT",
                                                                                   "SCENE")):
            out.append(text)
    return out


def make_docs(n_docs: int, seed: int) -> list[dict]:
    from src.data.sources import load_texts

    rng = random.Random(seed)
    plays = [verse_lines(p) for p in load_texts("shakespeare", "validation")]
    docs = []
    while len(docs) < n_docs:
        lines = rng.choice(plays)
        i = rng.randrange(2, len(lines) - 1)
        distractors = rng.sample([j for j in range(len(lines)) if abs(j - i) > 5], 3)
        choices = [" " + lines[j] for j in distractors]
        label = rng.randrange(4)
        choices.insert(label, " " + lines[i])
        docs.append({"context": lines[i - 2] + "\n" + lines[i - 1] + "\n",
                     "choices": [c.strip() for c in choices], "label": label})
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tasks", help="folder for the JSONL and task YAML")
    parser.add_argument("--docs", type=int, default=500, help="number of questions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "shakespeare_next_line.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in make_docs(args.docs, args.seed)))
    (out / "shakespeare_next_line.yaml").write_text(YAML.format(data=data))
    print(f"wrote {data} ({args.docs} questions) and {out / 'shakespeare_next_line.yaml'}")


if __name__ == "__main__":
    main()
