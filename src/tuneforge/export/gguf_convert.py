"""Run one of llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py) as a script,
with its own gguf-py first on the path and, for a tokenizer whose BPE pre-tokenizer the converter
does not recognise by hash, the pre-tokenizer tuneforge chose from the tokenizer's own regex.

Run by export/gguf.py in a child process: `python gguf_convert.py LLAMA_CPP_DIR PRE SCRIPT ARGS...`
(PRE empty: no fallback). Their files are used as they are; only the hash lookup's failure is
answered, by wrapping the method that raises it.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    root, pre, script, *args = argv
    sys.path[:0] = [root, str(Path(root) / "gguf-py")]
    if pre:
        from conversion import base  # type: ignore[import-not-found]  # llama.cpp's, on the path above

        recognise = base.TextModel.get_vocab_base_pre

        def chosen(self, tokenizer):  # noqa: ANN001, ANN202 - llama.cpp's signature
            try:
                return recognise(self, tokenizer)
            except NotImplementedError:
                print(f"tuneforge: pre-tokenizer chosen from tokenizer.json: {pre}", file=sys.stderr)
                return pre

        base.TextModel.get_vocab_base_pre = chosen
    sys.argv = [script, *args]
    runpy.run_path(str(Path(root) / script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
