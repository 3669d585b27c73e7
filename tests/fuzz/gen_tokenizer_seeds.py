#!/usr/bin/env python3
# Writes the seeds of fuzz_tokenizer_json into tests/fuzz/corpus_tokenizer: small tokenizers of
# every supported layout trained with HF `tokenizers` (run with the interop venv's python), each
# followed by a NUL byte and a text to encode. Usage: gen_tokenizer_seeds.py OUT_DIR
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
train = ["Hello world, it's 2024! Don't stop.", "caf\u00e9 na\u00efve \u65e5\u672c 123 456",
         "  spaces\tand\nnewlines\r\n", "<|im_start|>user hi<|im_end|>"] * 3
texts = [b"Hello world", "caf\u00e9 e\u0301 \U0001f600 1234 I'M".encode(), b"\xff\xfe bad \xc3",
         b"<|im_start|>x<s> y", b"   \n\n\t  x"]
LLAMA3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
          "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def save(name, tok, edit=None):
    d = json.loads(tok.to_str())
    if edit:
        edit(d)
    raw = json.dumps(d, ensure_ascii=False).encode()
    for i, t in enumerate(texts):
        with open(os.path.join(out, "%s-%d" % (name, i)), "wb") as f:
            f.write(raw + b"\0" + t)


def bytelevel(pre, norm=None):
    tok = Tokenizer(models.BPE())
    if norm:
        tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, trainers.BpeTrainer(vocab_size=40, special_tokens=[
        "<|im_start|>", "<|im_end|>"], show_progress=False))
    return tok


save("gpt2", bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False)))
save("llama3", bytelevel(pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(LLAMA3), "isolated"), pre_tokenizers.ByteLevel(use_regex=False)])))
save("qwen2nfc", bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False), normalizers.NFC()))
save("smollm", bytelevel(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  pre_tokenizers.ByteLevel()])))
spm = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
spm.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
spm.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                 decoders.Fuse(), decoders.Strip(" ", 1, 0)])
spm.train_from_iterator(train, trainers.BpeTrainer(
    vocab_size=60, special_tokens=["<unk>", "<s>", "</s>", "<0x41>", "<0xC3>"], show_progress=False))
save("spm", spm)


def metaspace(d):
    d["normalizer"] = None
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                          "split": False}


save("metaspace", spm, metaspace)
