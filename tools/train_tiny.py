#!/usr/bin/env python3
"""Train Baton's built-in default model: a small Llama-architecture model with
its own byte-level BPE tokenizer, on English text from Debian packages.

    python3 tools/make_tiny_corpus.py corpus.jsonl       # here, from Debian packages
    python3 tools/train_tiny.py corpus.jsonl OUT_DIR     # on the GPU machine

Fixed seeds and a fixed step count (GPU reductions are not bit-exact, so a
rerun differs in the last digits). Writes a Hugging Face model directory
(config.json, bf16 safetensors in shards of at most 12 MB so they can leave
the GPU machine; tools/merge_safetensors.py joins them), tokenizer.json,
tokenizer_config.json with the chat template, generation_config.json, a
README.md with held-out perplexity and samples, and expected.json with
transformers' greedy outputs for Baton's tests.
"""

import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261121
VOCAB = 8192
SEQ = 512
BATCH = 64
STEPS = 2500
TIME_LIMIT_S = 420
SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}")


def render(r):
    if r["kind"] == "chat":
        return f"<|user|>\n{r['user']}<|end|>\n<|assistant|>\n{r['assistant']}<|end|>\n"
    return r["text"]


def build_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, show_progress=False,
                                  special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def main():
    corpus_path, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    random.seed(SEED)
    torch.manual_seed(SEED)
    records = [json.loads(l) for l in open(corpus_path, encoding="utf-8")]
    held = [r for i, r in enumerate(records) if i % 100 == 0]
    train = [r for i, r in enumerate(records) if i % 100 != 0]
    texts = [render(r) for r in train]
    t0 = time.time()
    tok = build_tokenizer(texts)
    eot = tok.token_to_id("<|endoftext|>")
    end = tok.token_to_id("<|end|>")

    def encode_all(rs):
        ids = []
        for enc in tok.encode_batch([render(r) for r in rs]):
            ids.extend(enc.ids)
            ids.append(eot)
        return torch.tensor(ids, dtype=torch.long)

    train_ids = encode_all(train)
    held_ids = encode_all(held)
    print(f"tokenizer {tok.get_vocab_size()} tokens in {time.time() - t0:.0f}s; "
          f"{train_ids.numel() / 1e6:.1f}M training tokens, {held_ids.numel() / 1e6:.2f}M held out", flush=True)

    import transformers
    cfg = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
        num_attention_heads=6, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024,
        rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=None, eos_token_id=[end, eot],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = transformers.LlamaForCausalLM(cfg).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.1f}M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    warmup = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS))))
    gen = torch.Generator().manual_seed(SEED)
    data = train_ids.cuda()
    model.train()

    def loss_fn(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    step_fn = torch.compile(loss_fn)
    t0 = time.time()
    steps_done = 0
    for step in range(STEPS):
        starts = torch.randint(0, data.numel() - SEQ - 1, (BATCH,), generator=gen).cuda()
        idx = starts[:, None] + torch.arange(SEQ + 1, device="cuda")[None, :]
        chunk = data[idx]
        loss = step_fn(chunk[:, :-1], chunk[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        steps_done = step + 1
        if step % 250 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 > TIME_LIMIT_S:
            print(f"time limit: stopped after {steps_done} steps", flush=True)
            break
    train_s = time.time() - t0

    model.eval()
    with torch.no_grad():
        h = held_ids.cuda()
        n = (h.numel() - 1) // SEQ
        total, count = 0.0, 0
        for i in range(0, n, 32):
            rows = torch.stack([h[j * SEQ:(j + 1) * SEQ + 1] for j in range(i, min(n, i + 32))])
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=rows[:, :-1]).logits.float()
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), rows[:, 1:].reshape(-1),
                                     reduction="sum").item()
            count += rows[:, 1:].numel()
    ppl = math.exp(total / count)
    print(f"held-out perplexity {ppl:.2f} over {count} tokens", flush=True)

    model = model.to(torch.bfloat16).cpu()
    model.save_pretrained(out, max_shard_size="12MB")  # shards stay under 16 MB each
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                   "eos_token": "<|end|>", "pad_token": "<|endoftext|>", "model_max_length": 1024,
                   "chat_template": CHAT_TEMPLATE}, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [end, eot]}, f, indent=2)

    # Samples and fixtures from the files as saved, in f32 on the CPU.
    sys.path.insert(0, HERE)
    from make_fixtures import greedy
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    htok = transformers.AutoTokenizer.from_pretrained(out)

    def generate(ids, max_new, stop):
        cur = list(ids)
        with torch.no_grad():
            for _ in range(max_new):
                nxt = int(ref(torch.tensor([cur])).logits[0, -1].argmax())
                if nxt in stop:
                    break
                cur.append(nxt)
        return htok.decode(cur[len(ids):])

    prompts = ["The meaning of life is", "Once upon a time", "A computer is",
               "The best way to learn a language is", "In the morning, the river"]
    questions = ["What does relay mean?", "What is a baton?", "What does serve mean?",
                 "Define gateway.", "What is the meaning of cache?"]
    continuations = [(p, generate(htok(p)["input_ids"], 40, {end, eot})) for p in prompts]
    chats = []
    for q in questions:
        text = htok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        chats.append((q, generate(htok(text, add_special_tokens=False)["input_ids"], 60, {end, eot})))

    expected = {"model": "baton-tiny", "transformers": transformers.__version__, "greedy": [], "chat": []}
    for p in prompts[:3] + [questions[0]]:
        ids = htok(p)["input_ids"]
        out_ids, tops = greedy(ref, ids, 12)
        expected["greedy"].append({"prompt": p, "prompt_ids": ids, "output_ids": out_ids, "top5": tops})
    conv = [{"role": "user", "content": questions[0]}]
    expected["chat"].append({"messages": conv, "add_generation_prompt": True,
                             "text": htok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    with open(os.path.join(out, "train_report.json"), "w") as f:
        json.dump({"parameters": n_params, "steps": steps_done, "train_seconds": round(train_s),
                   "train_tokens": steps_done * BATCH * SEQ, "corpus_tokens": train_ids.numel(),
                   "held_out_tokens": count, "held_out_perplexity": ppl,
                   "continuations": continuations, "chats": chats,
                   "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                   "transformers": transformers.__version__}, f, indent=1, ensure_ascii=False)
    print(json.dumps({"continuations": continuations, "chats": chats}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
