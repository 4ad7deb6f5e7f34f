"""Domains for s1's diversity sampling: the Mathematics Subject Classification classes s1 classified its
pool into, a chat model that classifies a question as s1 did (`LLMDomainClassifier`), and the offline
keyword classifier used without one (`keyword_domain`)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from reasoning_sft.data.records import Record

MSC_PATH = Path(__file__).parent / "msc.json"   # s1's data/msc.json (Apache-2.0), 61 MSC classes


@functools.lru_cache(maxsize=1)
def msc_classes() -> list[dict]:
    """The Mathematics Subject Classification top-level classes s1 classified into: code, title, prompt."""
    return json.loads(MSC_PATH.read_text(encoding="utf-8"))


def msc_domain(code: str) -> str:
    """'11' -> '11 Number theory': the domain label of an MSC code."""
    title = {c["code"]: c["title"] for c in msc_classes()}.get(code)
    if title is None:
        raise ValueError(f"{code!r} is not an MSC top-level code (reasoning_sft/data/msc.json)")
    return f"{code} {title}"


# Fallback classifier: keywords -> the MSC class s1's classifier would most likely name.
MSC_KEYWORDS = {
    "51": ["triangle", "circle", "polygon", "angle", "perimeter", "radius", "tangent", "inscribed", "square"],
    "11": ["prime", "divisible", "divisor", "remainder", "modulo", "gcd", "digits", "integer"],
    "05": ["how many ways", "arrangements", "committee", "choose", "subsets", "graph", "colorings"],
    "60": ["probability", "randomly", "expected value", "random variable", "dice", "coin"],
    "12": ["polynomial", "roots", "coefficients", "quadratic"],
    "26": ["function", "real numbers", "inequality", "maximum", "minimum", "derivative", "continuous"],
    "28": ["integral", "measure", "integrable"],
    "40": ["sequence", "series", "converge", "limit"],
    "15": ["matrix", "matrices", "determinant", "eigenvalue", "vector space"],
    "70": ["velocity", "mass", "force", "momentum", "acceleration", "kinetic"],
    "78": ["electric", "magnetic", "charge", "field strength", "wavelength", "lens"],
    "81": ["quantum", "spin", "hamiltonian", "wave function", "photon"],
    "80": ["temperature", "heat", "entropy", "thermodynamic"],
    "92": ["molecule", "reaction", "compound", "acid", "cell", "protein", "gene", "dna", "enzyme", "organism"],
}


def keyword_domain(rec: Record) -> str:
    """Fallback classifier: the MSC class whose keywords the question mentions most, else 'other'."""
    q = rec.question.lower()
    scores = {code: sum(q.count(k) for k in kws) for code, kws in MSC_KEYWORDS.items()}
    best = max(scores, key=scores.get)
    return msc_domain(best) if scores[best] else "other"


MSC_SYSTEM_PROMPT = (   # s1's data/featurization.py, word for word
    "You are a helpful assistant that classifies questions into different subjects based on the provided "
    "classification rubrics. You will be given a question and a list of subjects. You need to classify the "
    "question into one of the subjects. If the question has multiple subjects, you should classify the "
    "question into the most relevant subject. Explain your reasoning, and end your response on a new line "
    "with two-digit code of the subject that the question belongs to.")


@dataclass
class LLMDomainClassifier:
    """s1's domain classification: a chat model (s1: Claude 3.5 Sonnet) reads the question and the MSC
    rubrics and ends its reply with a two-digit MSC code. Here any OpenAI-compatible endpoint; a reply
    that does not end in a known code is classified by keywords instead, and marked so."""
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = 60.0

    def __call__(self, rec: Record) -> str:
        from reasoning_sft.data.llm_client import MalformedReply, chat_completion
        rubrics = "\n\n".join(c["prompt"] for c in msc_classes())
        prompt = f"{MSC_SYSTEM_PROMPT}\n\n## Question\n{rec.question}\n\n## Classification rubrics\n{rubrics}"
        try:
            reply = chat_completion(self.base_url, self.model, prompt, self.api_key_env, self.timeout_seconds).strip()
        except MalformedReply:
            return keyword_domain(rec) + " (keywords: unusable reply)"
        code = reply[-2:]
        try:
            return msc_domain(code)
        except ValueError:
            return keyword_domain(rec) + " (keywords: unusable reply)"
