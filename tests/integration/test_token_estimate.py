"""The token estimate errs on the high side in every script and on pasted data, against
a real tokenizer: SmolLM2's (the llama.cpp peer's model), whose small, English-first
vocabulary splits other scripts and data into the most pieces. A low estimate lets a
trimmed history overflow the model's context (a Thai history came to 1,801 tokens in a
context of 1,024)."""

from __future__ import annotations

import json
import subprocess

import pytest

from bot.conversation.budget import estimate_tokens
from tests.peers.llamacpp import LLAMACPP_PYTHON, MODEL_FILE, LlamaCppPeer

pytestmark = pytest.mark.llamacpp

SAMPLES = {
    "english": "The quick brown fox jumps over the lazy dog, twice.",
    "chinese": "这是一个很长的中文句子，没有空格。",
    "japanese": "アシスタントさん、今日の天気を教えてください。",
    "thai": "สวัสดีครับผมชื่อสมชาย",
    "hindi": "नमस्ते दुनिया, आप कैसे हैं?",
    "arabic": "مَرْحَبًا بِكُمْ فِي هَذَا الْمَكَانِ",
    "russian": "Привет, как дела? Всё хорошо.",
    "family emoji": "👨‍👩‍👧‍👦",
    "skin tones": "👍🏽👋🏿",
    "flags": "🇯🇵🇧🇷🏴󠁧󠁢󠁥󠁮󠁧󠁿",
    "zalgo": "Z̷̢̛a̸̧l̵g̶o̴ ̷t̸e̵x̶t̷",
    "mixed": "Hello 世界! Привет 👋 مرحبا",
    # Pasted data: four characters a token counted these at a quarter to a half of what a
    # small model makes of them, and a history trimmed by it overflowed.
    "json": '{"id": 17, "name": "user17", "score": 0.8374, "tags": ["a", "b"]}, ',
    "number table": "48213,9921,30017,7,66410,215,89003,1442\n",
    # A space before a digit is a token of its own: tables, lists and times of numbers
    # with spaces came to 0.55–0.9 of the real count, and a history of them overflowed.
    "markdown table": "| 2021 | 7 | 3.5% |\n",
    "number list": "x = [12, 7, 305, 48, 9]\n",
    "digit grid": "1 0 4 7 2 9 5 3\n",
    "times": "from 9:30 to 14:05 ",
    "base64": "aGVsbG8gd29ybGQhIFRoaXMgaXMgYSB0ZXN0IG9mIGJhc2U2NCB0ZXh0Lg==",
    "hex": "3fa9c0e1d27b58004e9a1f6c8b2d7e30",
    "uuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7 ",
    "code": "    def handle(self, event: Event) -> None:\n        self._queue.put_nowait(event)\n",
    "url": "https://example.com/path/to/resource?query=value&other=123#frag ",
    "all caps": "THIS IS ALL CAPS TEXT WITH SOME WORDS IN IT. ",
    "tab table": "id\tname\tscore\n17\tada\t0.83\n",
    "indent": "\n" + " " * 24 + "return value",
    "tabs": "\t" * 40,
    "spaces": "a" + " " * 300 + "b",
    "crlf lines": "ok\r\n",
}

_TOKENIZE = """
import json, sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
texts = json.load(sys.stdin)
print(json.dumps([len(llm.tokenize(t.encode("utf-8"), add_bos=False)) for t in texts]))
"""


@pytest.mark.parametrize("times", [1, 20])
def test_the_estimate_is_never_below_a_real_tokenizers_count(
    llamacpp_peer: LlamaCppPeer, times: int
) -> None:
    texts = [text * times for text in SAMPLES.values()]
    done = subprocess.run(
        [str(LLAMACPP_PYTHON), "-c", _TOKENIZE, str(MODEL_FILE)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    real = json.loads(done.stdout.strip().splitlines()[-1])
    for name, text, tokens in zip(SAMPLES, texts, real, strict=True):
        assert estimate_tokens(text) >= tokens, (name, estimate_tokens(text), tokens)
