"""Sequence log-probability of a response under a model: sum of log π(y_t | x, y_<t).

The dual-margin strategy (docs/methods.md §1.5) combines these under a policy and a reference
model into DPO's implicit reward margin. Computed with vLLM's `prompt_logprobs` over the
templated prompt + response, generating one throw-away token.
"""

from __future__ import annotations

from curate.generate.vllm_backend import chat_token_ids
from curate.score import ScoreItem, ScoreResult


class SequenceLogprobScorer:
    tasks = None

    def __init__(self, backend, label: str):
        self.backend = backend
        self.name = f"logprob:{label}"
        self.version = backend.fingerprint

    def sequence_tokens(self, item: ScoreItem) -> tuple[list[int], int]:
        """(prompt + response token ids, number of prompt tokens)."""
        tokenizer = self.backend.llm.get_tokenizer()
        prompt_ids = chat_token_ids(tokenizer, item.messages)
        response_ids = tokenizer.encode(item.text, add_special_tokens=False)
        return prompt_ids + response_ids, len(prompt_ids)

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        from vllm import SamplingParams

        llm = self.backend.llm
        limit = self.backend.settings.max_model_len
        encoded = [self.sequence_tokens(item) for item in items]
        fits = [i for i, (ids, _) in enumerate(encoded) if len(ids) < limit]
        results: list[ScoreResult] = [
            ScoreResult(None, "error", {"reason": f"{len(ids)} tokens, max_model_len is {limit}"})
            for ids, _ in encoded
        ]
        if fits:
            params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
            outputs = llm.generate([{"prompt_token_ids": encoded[i][0]} for i in fits],
                                   sampling_params=params, use_tqdm=True)
            for index, output in zip(fits, outputs, strict=True):
                ids, prompt_length = encoded[index]
                total = 0.0
                for position in range(prompt_length, len(ids)):
                    total += output.prompt_logprobs[position][ids[position]].logprob
                results[index] = ScoreResult(total, "ok", {"response_tokens": len(ids) - prompt_length})
        return results
