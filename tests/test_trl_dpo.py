"""An export trains with TRL's DPOTrainer as it is, and the chat template doubles no special token."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import datasets
import polars as pl
import pytest

from curate.lake import schemas
from curate.publish.export import ExportOptions, export_pairs

NOW = datetime(2024, 10, 11, tzinfo=timezone.utc)
SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
QUESTIONS = [("What is 2+2?", "2+2 is 4.", "It is 5."), ("Capital of France?", "Paris.", "Rome, probably."),
             ("Name a colour.", "Blue.", "A number."), ("Is ice cold?", "Yes, ice is cold.", "No."),
             ("Spell cat.", "C-A-T.", "K-A-T."), ("What is 3*3?", "3*3 is 9.", "It is 6.")]


def _pairs() -> pl.DataFrame:
    rows = []
    for i, (question, chosen, rejected) in enumerate(QUESTIONS):
        prompt = ([SYSTEM] if i % 2 else []) + [{"role": "user", "content": question}]
        rows.append({"pair_id": f"pair-{i}", "prompt_id": f"prompt-{i}", "strategy": "margin", "params_json": "{}",
                     "prompt": prompt, "chosen": chosen, "rejected": rejected, "chosen_id": f"c{i}",
                     "rejected_id": f"r{i}", "scorer": "math_verify", "chosen_score": 1.0, "rejected_score": 0.0,
                     "margin": 1.0, "reason": "test", "dedup_key": f"k{i}", "run_id": "run", "created_at": NOW})
    return pl.from_arrow(schemas.conform("pairs", rows))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "export"
    export_pairs(_pairs(), out, ExportOptions(format="datasets", style="trl_conversational"))
    return datasets.load_from_disk(str(out))["train"]  # loaded back, unmodified


@pytest.fixture(scope="module")
def tokenizer(tiny_generator):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_generator)


def _adjacent_repeats(ids: list[int], token: int) -> int:
    return sum(1 for a, b in zip(ids, ids[1:]) if a == b == token)


def test_chat_template_does_not_double_bos_or_eos(exported, tokenizer):
    """Tokenise exported rows as TRL does for conversational data (apply_chat_template, tokenize=True)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert bos is not None and eos is not None
    for example in exported:
        prompt_ids = tokenizer.apply_chat_template(example["prompt"], tokenize=True, return_dict=True,
                                                   add_generation_prompt=True)["input_ids"]
        full_ids = tokenizer.apply_chat_template(example["prompt"] + example["chosen"], tokenize=True,
                                                 return_dict=True)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids  # the completion starts after the prompt
        completion = full_ids[len(prompt_ids):]
        assert completion.count(eos) == 1, tokenizer.decode(completion)  # one EOS ends the answer
        for token in (bos, eos):
            assert _adjacent_repeats(full_ids, token) == 0, tokenizer.decode(full_ids)
        assert full_ids[:2] != [bos, bos]
        # the text carries no special token of its own: every BOS/EOS comes from the template
        rendered = tokenizer.apply_chat_template(example["prompt"] + example["chosen"], tokenize=False)
        assert rendered.count(tokenizer.bos_token) == full_ids.count(bos)
        assert tokenizer.bos_token not in example["chosen"][0]["content"]
        assert tokenizer.eos_token not in example["chosen"][0]["content"]


@pytest.mark.slow
def test_dpo_trainer_trains_on_an_export(exported, tokenizer, tiny_generator, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_generator, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=1,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
        fp16=False, gradient_checkpointing=False, max_length=128, dataloader_num_workers=0, seed=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=exported, processing_class=tokenizer)

    # what TRL tokenised: one BOS-led prompt, completions that end in a single EOS
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for row in trainer.train_dataset:
        sequence = row["prompt_ids"] + row["chosen_ids"]
        assert _adjacent_repeats(sequence, bos) == 0 and _adjacent_repeats(sequence, eos) == 0
        assert row["chosen_ids"].count(eos) == 1 and row["rejected_ids"].count(eos) == 1

    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print("DPO losses per step:", losses, "training_loss:", output.training_loss)
    assert len(losses) == 3
    assert all(math.isfinite(loss) for loss in losses) and math.isfinite(output.training_loss)
