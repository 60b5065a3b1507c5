#!/usr/bin/env python3
"""Build Baton's model test fixtures and transformers' reference outputs.

Makes tiny fixed-seed random-weight models in Hugging Face layout, each with a
real-format tokenizer trained here with the `tokenizers` library, and records
what transformers does with them: token ids, decoded text, chat-template
renders, and greedy continuations with the top-5 logits of every step.

    python3 tools/make_fixtures.py OUT_DIR

Needs torch, transformers (5.x), tokenizers and jinja2: run it on the GPU
machine (tools/gpu_fixtures.sh). The output is committed under
tests/fixtures/; Baton's tests compare against it on any machine.

Models (covering both generations of the HF format):
  tiny-llama3   Llama 3 style: byte-level BPE with the Llama 3 split regex and
                ignore_merges, GQA, llama3 rope scaling; f32 weights, sharded;
                config with transformers 5's `rope_parameters`;
                chat_template.jinja.
  tiny-qwen2    Qwen2 style: NFC + byte-level BPE with Qwen2's regex, q/k/v
                biases, tied embeddings; bf16 weights; legacy `rope_theta`;
                template inside tokenizer_config.json.
  tiny-llama2   Llama 2 style: SentencePiece-like BPE with byte fallback
                (Prepend/Replace normaliser), linear rope scaling in legacy
                `rope_scaling`; f16 weights; template in tokenizer_config.json.
  tiny-mistral  Mistral style: the same vocabulary behind a Metaspace
                pre-tokenizer/decoder; MistralForCausalLM; bf16 weights.
"""

import copy
import json
import os
import random
import shutil
import sys

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SEED = 1234
HERE = os.path.dirname(os.path.abspath(__file__))

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------- corpus ----

WORDS = """the a an of to in and is was it that for on with as be by at this from
or have not are but had they his her she he we you i my your our their them
what which who when where why how all any each more most other some such no
only own same so than too very can will just should now serve model token
request prefill decode cache batch gateway router instance latency throughput
relay baton runner queue block page memory transfer buffer stream answer
question word mean means meaning light water stone river mountain city
people time year day night good new first last long great little old right
big high different small large next early young important few public bad
able run running ran walk think thought said says make made know knew take
came come see seen look want give use find tell ask work seem feel try leave
call keep let begin show hear play move live believe bring happen write
sit stand lose pay meet include continue set learn change lead understand
watch follow stop create speak read allow add spend grow open offer remember
love consider appear buy wait die send expect build stay fall cut reach kill
remain suggest raise pass sell require report decide pull""".split()

SENTENCES = [
    "Baton serves large language models fast and at scale.",
    "The prompt is processed on a prefill instance, and tokens are generated on a decode instance.",
    "Café, naïve, résumé and façade keep their accents; ÀÉÎÕÜ ñ ç ß ø å.",
    "你好，世界！这是一个测试。日本語のテキストも少し。한국어 문장도 있습니다.",
    "Emoji: 🦀 🚀 👍🏽 ❤️ 🎉 and symbols → ← ∑ ∞ ≠ ± °C €100.",
    "Numbers 0 1 2 3 12 123 1234 12345 3.14159 2026-11-21 and 1,000,000.",
    "def square(x):\n    return x ** 2\n\nfor i in range(10):\n    print(square(i))\n",
    "I'm sure you're right; they'll see we've done what he'd want. DON'T SHOUT.",
    "Lines\n\nwith  double  spaces\tand\ttabs\r\nand Windows line ends.",
    "What does relay mean? Relay means passing something from one runner to the next.",
]


def corpus(n_lines=4000):
    rng = random.Random(SEED)
    lines = []
    for i in range(n_lines):
        k = rng.randint(4, 18)
        words = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        s = " ".join(words)
        if rng.random() < 0.2:
            s += ", " + str(rng.randint(0, 99999))
        s += rng.choice([".", ".", "?", "!", ";", ":"])
        lines.append(s)
        if i % 10 == 0:
            lines.append(SENTENCES[(i // 10) % len(SENTENCES)])
    return lines


# ------------------------------------------------------------ tokenizers ----

def edit_json(tok, fn):
    data = json.loads(tok.to_str())
    fn(data)
    return Tokenizer.from_str(json.dumps(data))


def byte_level_tokenizer(pattern, nfc, specials, bos=None):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens(specials)
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                          special_tokens=[(bos, bos_id)]),
        ])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def sentencepiece_vocab():
    """BPE with byte fallback laid out as Llama 2 does: <unk> <s> </s> <0x00>..<0xFF> first."""
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False, limit_alphabet=120,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens)
    tok.train_from_iterator(corpus(), trainer)

    def fix(d):
        # Byte tokens live in the vocabulary only, as in published Llama 2 files.
        d["added_tokens"] = [t for t in d["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    return edit_json(tok, fix)


def llama2_tokenizer(base):
    def fix(d):
        d["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        d["pre_tokenizer"] = None
        d["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = edit_json(base, fix)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    return tok


def mistral_tokenizer(base):
    tok = Tokenizer.from_str(base.to_str())
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    return tok


# --------------------------------------------------------------- templates ----

LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] | trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = 'You are a helpful assistant.' %}\n"
    "{%- endif %}\n"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message + '<|eot_id|>' }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n")

QWEN2_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

MISTRAL_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}")

LLAMA2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set loop_messages = messages[1:] %}{%- set system_message = messages[0]['content'] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- set system_message = false %}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if loop.index0 == 0 and system_message != false %}"
    "{%- set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{%- else %}{%- set content = message['content'] %}{%- endif %}"
    "{%- if message['role'] == 'user' %}{{- bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + content.strip() + ' ' + eos_token }}{%- endif %}"
    "{%- endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What does relay mean?"}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "Hello there!"},
     {"role": "assistant", "content": "Hi. How can I help?"},
     {"role": "user", "content": "Tell me about caches — and café ☕."}],
    [{"role": "user", "content": "  spaces around  "},
     {"role": "assistant", "content": "ok"},
     {"role": "user", "content": "line one\nline two"}],
]

TEXTS = [
    "Hello world",
    "Baton serves large language models fast and at scale.",
    "café naïve résumé ÀÉÎÕÜ",
    "你好，世界！日本語 한국어",
    "I ❤️ 🦀 and 👍🏽!",
    "a    b\t\tc  ",
    "line1\n\nline2\r\nline3\n",
    " leading space",
    "trailing space ",
    "12345 3.14159 1,000,000",
    "def f(x):\n    return x**2\n",
    "I'm sure you're right, they'll see WE'VE won.",
    "e\u0301 \u1100\u1161 \ufb01",
    "",
    "?!... ---",
    "unseenwordzzq qqqxj",
]

# ------------------------------------------------------------------ models ----

MODELS = {
    "tiny-llama3": dict(
        arch="LlamaForCausalLM", tokenizer="llama3", bos="<|begin_of_text|>", eos="<|eot_id|>",
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        template=LLAMA3_TEMPLATE, template_in="jinja", config_style="v5", dtype=torch.float32, shard="60KB",
        cfg=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
        rope=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                  high_freq_factor=4.0, original_max_position_embeddings=8192),
        eos_ids=["<|end_of_text|>", "<|eot_id|>"]),
    "tiny-qwen2": dict(
        arch="Qwen2ForCausalLM", tokenizer="qwen2", bos=None, eos="<|im_end|>",
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        template=QWEN2_TEMPLATE, template_in="config", config_style="legacy", dtype=torch.bfloat16, shard=None,
        cfg=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=1, max_position_embeddings=4096, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, use_sliding_window=False),
        rope=dict(rope_type="default", rope_theta=1000000.0),
        eos_ids=["<|im_end|>", "<|endoftext|>"]),
    "tiny-llama2": dict(
        arch="LlamaForCausalLM", tokenizer="llama2", bos="<s>", eos="</s>", specials=[],
        template=LLAMA2_TEMPLATE, template_in="config", config_style="legacy", dtype=torch.float16, shard=None,
        cfg=dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, attention_bias=False, mlp_bias=False),
        rope=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
        eos_ids=["</s>"]),
    "tiny-mistral": dict(
        arch="MistralForCausalLM", tokenizer="mistral", bos="<s>", eos="</s>", specials=[],
        template=MISTRAL_TEMPLATE, template_in="jinja", config_style="v5", dtype=torch.bfloat16, shard=None,
        cfg=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, sliding_window=None),
        rope=dict(rope_type="default", rope_theta=1000000.0),
        eos_ids=["</s>"]),
}


def build_tokenizers():
    sp = sentencepiece_vocab()
    return {
        "llama3": byte_level_tokenizer(LLAMA3_PAT, False, MODELS["tiny-llama3"]["specials"], bos="<|begin_of_text|>"),
        "qwen2": byte_level_tokenizer(QWEN2_PAT, True, MODELS["tiny-qwen2"]["specials"]),
        "llama2": llama2_tokenizer(sp),
        "mistral": mistral_tokenizer(sp),
    }


def set_llama3_ignore_merges(tok):
    def fix(d):
        d["model"]["ignore_merges"] = True
    return edit_json(tok, fix)


def init_weights(model, seed):
    """Random weights with well-separated logits, so greedy ties cannot occur."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                std = 1.0 if "embed_tokens" in name else 1.5 / (p.shape[1] ** 0.5)
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def write_config(path, spec, vocab_size, bos_id, eos_ids):
    import transformers
    cls = getattr(transformers, spec["arch"].replace("ForCausalLM", "Config"))
    common = dict(vocab_size=vocab_size, bos_token_id=bos_id,
                  eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0], **spec["cfg"])
    try:
        return cls(rope_parameters=dict(spec["rope"]), **common)
    except TypeError:
        rope = dict(spec["rope"])
        theta = rope.pop("rope_theta")
        return cls(rope_theta=theta, rope_scaling=None if rope["rope_type"] == "default" else rope, **common)


def load_hf_tokenizer(d):
    import transformers
    try:
        return transformers.AutoTokenizer.from_pretrained(d)
    except Exception as e:
        print(f"AutoTokenizer failed on {d}: {e}; trying PreTrainedTokenizerFast")
        return transformers.PreTrainedTokenizerFast.from_pretrained(d)


def to_legacy_config(path, rope):
    with open(path) as f:
        d = json.load(f)
    d.pop("rope_parameters", None)
    d["rope_theta"] = rope["rope_theta"]
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta",)}
    if scaling.get("rope_type") == "default":
        d["rope_scaling"] = None
    else:
        scaling["type"] = scaling.pop("rope_type")
        d["rope_scaling"] = scaling
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    with open(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)


def topk(logits, k=5):
    v, i = torch.topk(logits, k)
    return {"ids": i.tolist(), "logits": [float(x) for x in v]}


def greedy(model, ids, steps):
    out, tops = [], []
    cur = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([cur])).logits[0, -1].double()
            t = topk(logits)
            tops.append(t)
            nxt = t["ids"][0]
            out.append(nxt)
            cur.append(nxt)
    return out, tops


def make_model(out_root, name, spec, tok):
    import transformers
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok.save(os.path.join(d, "tokenizer.json"))
    bos_id = tok.token_to_id(spec["bos"]) if spec["bos"] else None
    eos_ids = [tok.token_to_id(t) for t in spec["eos_ids"]]
    specials_map = {}
    if spec["bos"]:
        specials_map["bos_token"] = spec["bos"]
    specials_map["eos_token"] = spec["eos"]
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
            "model_max_length": spec["cfg"]["max_position_embeddings"], **specials_map}
    if spec["template_in"] == "config":
        tcfg["chat_template"] = spec["template"]
    else:
        with open(os.path.join(d, "chat_template.jinja"), "w") as f:
            f.write(spec["template"])
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2, ensure_ascii=False)

    cfg = write_config(d, spec, tok.get_vocab_size(), bos_id, eos_ids)
    torch.manual_seed(SEED)
    model = getattr(transformers, spec["arch"])(cfg)
    init_weights(model, SEED + len(name))
    model = model.to(spec["dtype"])
    kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model.save_pretrained(d, **kwargs)
    gen = {"bos_token_id": bos_id, "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0]}
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    if spec["config_style"] == "legacy":
        to_legacy_config(os.path.join(d, "config.json"), spec["rope"])

    # References come from the files as saved, loaded back the way a user would.
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    htok = load_hf_tokenizer(d)

    expected = {"model": name, "transformers": transformers.__version__, "tokenizer": [], "chat": [], "greedy": []}
    raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    special_texts = [f"{spec['specials'][0] if spec['specials'] else '<s>'}Hi there{spec['eos']}"]
    for text in TEXTS + special_texts:
        ids = htok(text, add_special_tokens=True)["input_ids"]
        ids_ns = htok(text, add_special_tokens=False)["input_ids"]
        raw_ids = raw.encode(text, add_special_tokens=True).ids
        if ids != raw_ids:
            print(f"WARNING {name}: transformers and tokenizers disagree on {text!r}: {ids} vs {raw_ids}")
        expected["tokenizer"].append({
            "text": text, "ids": ids, "ids_no_special": ids_ns,
            "decoded": raw.decode(ids, skip_special_tokens=False),
            "decoded_skip": raw.decode(ids, skip_special_tokens=True)})
    for conv in CONVERSATIONS:
        for agp in (False, True):
            case = {"messages": conv, "add_generation_prompt": agp}
            try:
                case["text"] = htok.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp)
            except Exception as e:  # the template's own raise_exception
                case["error"] = str(e)
            expected["chat"].append(case)

    rng = random.Random(SEED)
    long_text = " ".join(rng.choice(WORDS) for _ in range(140))
    prompts = ["The gateway", "What does relay mean?", "你好 café 🦀", long_text]
    for p in prompts:
        ids = htok(p, add_special_tokens=True)["input_ids"]
        out, tops = greedy(model, ids, 12)
        expected["greedy"].append({"prompt": p, "prompt_ids": ids, "output_ids": out, "top5": tops})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: vocab {tok.get_vocab_size()}, {n} parameters, "
          f"{len(expected['tokenizer'])} tokenizer cases, {len(expected['chat'])} chat cases")


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures")
    os.makedirs(out_root, exist_ok=True)
    random.seed(SEED)
    torch.manual_seed(SEED)
    toks = build_tokenizers()
    toks["llama3"] = set_llama3_ignore_merges(toks["llama3"])
    failed = []
    for name, spec in MODELS.items():
        try:
            make_model(out_root, name, spec, toks[spec["tokenizer"]])
        except Exception as e:
            import traceback
            traceback.print_exc()
            failed.append(name)
    if failed:
        print("FAILED:", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
