"""Sequence log-probability of a response under a model: sum of log π(y_t | x, y_<t).

The dual-margin strategy (docs/methods.md §1.5) combines these under a policy and a reference
model into DPO's implicit reward margin. The backend computes them (vLLM's `prompt_logprobs` over
the templated prompt + response, see VLLMBackend.response_logprobs); a backend without
`response_logprobs` cannot serve this scorer.
"""

from __future__ import annotations

from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ModelOptions, ScorerKind, model_label, resolve_scoring_model


class SequenceLogprobScorer:
    tasks = None

    def __init__(self, backend, label: str):
        if not hasattr(backend, "response_logprobs"):
            raise ValueError(f"{backend.model_label}: this backend gives no log-probs (a local vLLM model does)")
        self.backend = backend
        self.name = f"logprob:{label}"
        self.version = backend.fingerprint

    def sequence_tokens(self, item: ScoreItem) -> tuple[list[int], int]:
        """(prompt + response token ids, number of prompt tokens)."""
        return self.backend.sequence_tokens(item.messages, item.text)

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        results = []
        for total, response_tokens, error in self.backend.response_logprobs([(i.messages, i.text) for i in items]):
            results.append(ScoreResult(None, "error", {"reason": error}) if error is not None
                           else ScoreResult(total, "ok", {"response_tokens": response_tokens}))
        return results


def _build(spec, models) -> SequenceLogprobScorer:
    backend = models.scoring_backend(spec)
    return SequenceLogprobScorer(backend, model_label(spec, backend))


KIND = ScorerKind("logprob", _build, ModelOptions, needs_model=True, resolve=resolve_scoring_model)
