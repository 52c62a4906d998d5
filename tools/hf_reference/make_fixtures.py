#!/usr/bin/env python3
"""Writes tests/fixtures/hf: tiny models saved by Hugging Face transformers itself, with the
logits, token ids and generations HF computes for them. The C++ tests (tests/unit/test_hf_reference.cpp)
load these folders through engram's HF import and must reproduce HF's numbers: this checks the
name maps, Conv1D transposes, activations, norms, rotary convention, T5 buckets, the byte-level BPE
and the search strategies against HF's own code rather than against our own writer.

Not part of the build or of tools/test.sh: the fixtures are committed. Re-run it only to change
them, in a throw-away environment:
    python3 -m venv /tmp/hfv && /tmp/hfv/bin/pip install torch==2.5.1 transformers==4.44.2
    /tmp/hfv/bin/python tools/hf_reference/make_fixtures.py
Weights are random (seeded): every tensor is drawn from N(0, s), norm weights from N(1, s). HF's
initialisation leaves biases at 0 and norms at exactly 1, which would hide a swapped tensor.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import (GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig,
                          LlamaForCausalLM, T5Config, T5ForConditionalGeneration)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")
CORPUS = os.path.join(ROOT, "tests", "fixtures", "text", "corpus.txt")

TEXTS = [
    "The teacher wrote about the red barn in the rain.",
    "Room 204, floor 3. It's fine, really!",
    "  Spaces,\ttabs and caf\u00e9 na\u00efve \u2014 unicode.",
]
PROMPTS = ["The committee walked to", "A quiet child"]


def randomize(model, seed, scale):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = "ln" in name or "norm" in name
            p.copy_((1.0 if is_norm and name.endswith("weight") else 0.0) + torch.randn_like(p) * scale)
    model.eval()


def fresh(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def generations(model, prompt_ids, pad_id, eos_id, max_new):
    """Greedy, beam and diverse group beam for each prompt alone, and greedy for the prompts
    batched with left padding (HF derives positions from the attention mask)."""
    out = {}
    settings = {
        "greedy": dict(do_sample=False, num_beams=1),
        "beam": dict(do_sample=False, num_beams=3, length_penalty=1.0, early_stopping=True),
        "diverse_beam": dict(do_sample=False, num_beams=4, num_beam_groups=2, diversity_penalty=0.5,
                             length_penalty=1.0, early_stopping=True),
    }
    for name, kw in settings.items():
        rows = []
        for ids in prompt_ids:
            x = torch.tensor([ids])
            y = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
                               pad_token_id=pad_id, eos_token_id=eos_id, **kw)
            rows.append(y[0, len(ids):].tolist())
        out[name] = rows
    width = max(len(p) for p in prompt_ids)
    x = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    y = model.generate(x, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                       pad_token_id=pad_id, eos_token_id=eos_id)
    out["greedy_batched"] = [row[width:].tolist() for row in y]
    return out


def write_reference(path, meta, tensors):
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, os.path.join(path, "reference.safetensors"))
    meta["transformers"] = transformers.__version__
    meta["torch"] = torch.__version__
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)


def gpt2():
    path = fresh("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train([CORPUS], vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"])
    bpe.save_model(path)  # vocab.json + merges.txt, as GPT-2 ships them
    tok = GPT2TokenizerFast(vocab_file=os.path.join(path, "vocab.json"),
                            merges_file=os.path.join(path, "merges.txt"))
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config)
    randomize(model, 1, 0.3)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    ids = [tok.encode(t) for t in TEXTS]
    logits = {f"logits_{i}": model(torch.tensor([x])).logits[0] for i, x in enumerate(ids)}
    prompt_ids = [tok.encode(p) for p in PROMPTS]
    gens = generations(model, prompt_ids, pad_id=eos, eos_id=eos, max_new=6)
    write_reference(path, {"texts": TEXTS, "ids": ids, "prompts": PROMPTS, "prompt_ids": prompt_ids,
                           "eos_id": eos, "generations": gens,
                           "greedy_text": [tok.decode(g) for g in gens["greedy"]]}, logits)


def llama():
    path = fresh("llama")
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    randomize(model, 2, 0.2)
    model.save_pretrained(path, safe_serialization=True)
    torch.manual_seed(3)
    ids = [torch.randint(3, 96, (n,)).tolist() for n in (13, 7)]
    logits = {f"logits_{i}": model(torch.tensor([x])).logits[0] for i, x in enumerate(ids)}
    prompt_ids = [torch.randint(3, 96, (n,)).tolist() for n in (5, 3)]
    gens = generations(model, prompt_ids, pad_id=0, eos_id=2, max_new=6)
    write_reference(path, {"ids": ids, "prompt_ids": prompt_ids, "eos_id": 2, "generations": gens}, logits)


def t5(name, feed_forward_proj, tied):
    path = fresh(name)
    config = T5Config(vocab_size=80, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3,
                      num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                      feed_forward_proj=feed_forward_proj, tie_word_embeddings=tied,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration(config)
    randomize(model, 4, 0.3)
    model.save_pretrained(path, safe_serialization=True)
    torch.manual_seed(5)
    # Two documents of 30 and 19 tokens (the second right-padded), so relative positions reach
    # past max_distance and the padding mask matters; decoder inputs start with the start token.
    enc = torch.zeros(2, 30, dtype=torch.long)
    enc[0] = torch.randint(2, 80, (30,))
    enc[1, :19] = torch.randint(2, 80, (19,))
    enc_mask = (torch.arange(30)[None, :] < torch.tensor([[30], [19]])).long()
    dec = torch.randint(2, 80, (2, 9))
    dec[:, 0] = 0
    logits = model(input_ids=enc, attention_mask=enc_mask, decoder_input_ids=dec).logits
    write_reference(path, {"input_ids": enc.tolist(), "attention_mask": enc_mask.tolist(),
                           "decoder_input_ids": dec.tolist()}, {"logits": logits})


def main():
    os.makedirs(OUT, exist_ok=True)
    with torch.no_grad():
        gpt2()
        llama()
        t5("t5", "relu", True)           # t5 v1.0: tied head, output scaled by d_model^-0.5
        t5("t5_v11", "gated-gelu", False)  # t5 v1.1: gated GELU, untied head
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
