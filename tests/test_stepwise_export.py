"""A step-wise pair in every export style: the trainer reads the correct prefix as the start of the
assistant's reply and the step as its continuation, never as a second assistant turn.

Checked with TRL's own tokenisation (DPOTrainer._prepare_dataset, the code DPOTrainer runs on its
train set) and the SmolLM2 chat template from the embedded GGUF."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import pytest

from curate.publish.export import ExportOptions, export_pairs, to_style
from tests.test_stepwise_pairs import QUESTION, bad, build, good, scripted

PREFIX = "Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\n"
CHOSEN = "Step 3: The answer is 20."
REJECTED = "Step 3: 20 - 1 = 19, subtracting the bracket"
END = "<|im_end|>"


@pytest.fixture(scope="module")
def pairs():
    prompts, candidates, scores = scripted({
        1: [good("Step 2: 5 * 4 = 20\nThe answer is 20."), bad("Step 2: 25")],
        2: [bad("Step 3: 20 - 1 = 19"), good(CHOSEN)],
        3: [bad("Step 4: The answer is 19.")],
    })
    pairs = build(prompts, candidates, scores)
    row = pairs.to_dicts()[0]
    assert row["prompt"] == QUESTION + [{"role": "assistant", "content": PREFIX}]
    assert (row["chosen"], row["rejected"]) == (CHOSEN, REJECTED)
    return pairs


@pytest.fixture(scope="module")
def tokenizer(tiny_generator):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_generator)  # the embedded GGUF's tokenizer, saved
    assert tokenizer.eos_token == END and END in tokenizer.chat_template
    return tokenizer


def exported(pairs, tmp_path, style):
    out = tmp_path / style
    export_pairs(pairs, out, ExportOptions(style=style))
    return datasets.load_from_disk(str(out))["train"]


def dpo_tokenised(dataset, tokenizer, tmp_path):
    """prompt_ids / chosen_ids / rejected_ids of each row, as DPOTrainer computes them."""
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "dpo"), use_cpu=True, bf16=False, report_to=[])
    trainer = SimpleNamespace(_tokenizer=tokenizer)  # the one attribute _prepare_dataset reads
    return DPOTrainer._prepare_dataset(trainer, dataset, tokenizer, args, "train")


def the_reply(tokenizer, ids):
    """The text of the last assistant turn of a token sequence (from its <|im_start|> on)."""
    start = len(ids) - 1 - ids[::-1].index(tokenizer.convert_tokens_to_ids("<|im_start|>"))
    return tokenizer.decode(ids[start + 1:])


def test_trl_reads_prefix_and_step_as_one_assistant_turn(pairs, tokenizer, tmp_path):
    end = tokenizer.convert_tokens_to_ids(END)
    for style in ("trl_conversational", "trl_standard"):
        row = dpo_tokenised(exported(pairs, tmp_path, style), tokenizer, tmp_path)[0]
        for step, completion_ids in ((CHOSEN, row["chosen_ids"]), (REJECTED, row["rejected_ids"])):
            sequence = row["prompt_ids"] + completion_ids
            text = tokenizer.decode(sequence)
            assert text.count(PREFIX) == 1 and text.count("Step 1:") == 1  # the prefix once
            # the first end-of-turn token after the prefix closes the step: none comes between them
            assert sequence.count(end) == text.count(END)  # every END in the text is that one token
            after_prefix = text.index(PREFIX) + len(PREFIX)
            assert text[after_prefix:].startswith(step) and text.index(END, after_prefix) == after_prefix + len(step)
            if style == "trl_conversational":
                # the SmolLM2 template: one assistant turn holding prefix and step, trained as the completion
                assert the_reply(tokenizer, sequence) == f"assistant\n{PREFIX}{step}{END}\n"
                assert tokenizer.decode(completion_ids) == f"{PREFIX}{step}{END}\n"
            else:
                # a string prompt ends inside the reply: the completion is the step alone (+ TRL's EOS)
                assert tokenizer.decode(row["prompt_ids"]) == QUESTION[0]["content"] + "\n\n" + PREFIX
                assert tokenizer.decode(completion_ids) == step + END


def test_a_prompt_ending_in_an_assistant_message_is_two_turns_for_trl(pairs, tokenizer, tmp_path):
    """Why the export moves the prefix: given to TRL as is, the step becomes a second assistant turn."""
    raw = pairs.to_dicts()[0]
    dataset = datasets.Dataset.from_list([{
        "prompt": raw["prompt"], "chosen": [{"role": "assistant", "content": raw["chosen"]}],
        "rejected": [{"role": "assistant", "content": raw["rejected"]}]}])
    row = dpo_tokenised(dataset, tokenizer, tmp_path)[0]
    text = tokenizer.decode(row["prompt_ids"] + row["chosen_ids"])
    assert PREFIX + END in text and PREFIX + CHOSEN not in text
    assert the_reply(tokenizer, row["prompt_ids"] + row["chosen_ids"]) == f"assistant\n{CHOSEN}{END}\n"


def test_openrlhf_and_llamafactory_hold_the_step_as_the_continuation_of_the_prefix(pairs, tokenizer):
    openrlhf = to_style(pairs, "openrlhf").to_pylist()[0]
    assert openrlhf["chosen"] == QUESTION + [{"role": "assistant", "content": PREFIX + CHOSEN}]
    assert openrlhf["rejected"] == QUESTION + [{"role": "assistant", "content": PREFIX + REJECTED}]
    # OpenRLHF's --apply_chat_template: prompt = the conversation less its last message with a
    # generation prompt; response = the rest of the whole rendered conversation
    prompt = tokenizer.apply_chat_template(openrlhf["chosen"][:-1], tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(openrlhf["chosen"], tokenize=False)
    assert whole.startswith(prompt) and whole[len(prompt):] == f"{PREFIX}{CHOSEN}{END}\n"
    factory = to_style(pairs, "llamafactory").to_pylist()[0]
    assert factory["conversations"] == [{"from": "human", "value": QUESTION[0]["content"]}]
    assert factory["chosen"] == {"from": "gpt", "value": PREFIX + CHOSEN}
    assert factory["rejected"] == {"from": "gpt", "value": PREFIX + REJECTED}


def test_every_export_path_moves_the_prefix(pairs, tmp_path):
    conversational = to_style(pairs, "trl_conversational").to_pylist()[0]
    assert conversational["prompt"] == QUESTION
    assert conversational["chosen"] == [{"role": "assistant", "content": PREFIX + CHOSEN}]
    standard = to_style(pairs, "trl_standard").to_pylist()[0]
    assert (standard["prompt"], standard["chosen"], standard["rejected"]) == (
        QUESTION[0]["content"] + "\n\n" + PREFIX, CHOSEN, REJECTED)
    export_pairs(pairs, tmp_path / "original")
    original = datasets.load_from_disk(str(tmp_path / "original"))["train"][0]
    assert original["prompt"] == QUESTION and original["rejected"][0]["content"] == PREFIX + REJECTED
