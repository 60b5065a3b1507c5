#!/usr/bin/env python3
"""Render the chat templates in tools/templates/ with jinja2 configured as
transformers' apply_chat_template configures it, and write the expected
outputs (or errors) to tests/fixtures/templates/cases.json.

model/chat_template_test.cpp asserts that Baton renders byte-identical text.
Run from anywhere: python3 tools/make_template_fixtures.py
Needs only jinja2 (3.1.x); transformers itself is not required.
"""

import datetime
import json
import pathlib

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "tools" / "templates"
OUT = ROOT / "tests" / "fixtures" / "templates" / "cases.json"

# strftime_now reads this instant (noon UTC, so the date is the same in any
# time zone within +-11 hours); the C++ test passes it as RenderOptions::now.
FIXED_NOW = 1721995200  # 2024-07-26T12:00:00Z


class GenerationBlocks(Extension):
    """transformers' {% generation %} tag: renders its body through a call
    block (so it has its own scope) and otherwise changes nothing."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(FIXED_NOW).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlocks, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


TEMPLATES = {
    "llama31": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen25": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "deepseek_phi": {"bos_token": "<|bos|>", "eos_token": "<|endoftext|>",
                     "additional_special_tokens": ["<|user|>", "<|assistant|>"]},
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Local time in a zone.",
                 "parameters": {"type": "object",
                                "properties": {"zone": {"type": "string"}}}},
}


def call(name, arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS = {
    "single_user": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_user": {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"}]},
    "no_system_multi": {"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke."}]},
    "content_parts": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this:"},
                                     {"type": "image"},
                                     {"type": "text", "text": "  briefly please  "}]},
        {"role": "assistant", "content": "Done."}]},
    "unicode": {"messages": [
        {"role": "system", "content": "Réponds en français, s'il te plaît."},
        {"role": "user",
         "content": "Grüße, 世界! 🚀 \"double\" and 'single' \\ backslash\nnew line\ttab"}]},
    "whitespace": {"messages": [
        {"role": "user", "content": "  padded content \n"},
        {"role": "assistant", "content": "\n answer  "},
        {"role": "user", "content": "\tok"}]},
    "tools": {
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "",
             "tool_calls": [call("get_weather", {"location": "Paris", "unit": "celsius"})]},
            {"role": "tool", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
            {"role": "assistant", "content": "It is 21°C and clear."}],
        "tools": [WEATHER_TOOL, TIME_TOOL]},
    "tools_pending": {
        "messages": [{"role": "user", "content": "What time is it in Tokyo?"}],
        "tools": [TIME_TOOL]},
    "parallel_calls": {
        "messages": [
            {"role": "user", "content": "Weather and time in Oslo?"},
            {"role": "assistant", "content": None,
             "tool_calls": [call("get_weather", {"location": "Oslo"}),
                            call("get_time", {"zone": "Europe/Oslo"})]},
            {"role": "tool", "content": "{\"temperature\": -3}"},
            {"role": "tool", "content": "09:15"}],
        "tools": [WEATHER_TOOL, TIME_TOOL]},
    "bad_alternation": {"messages": [
        {"role": "user", "content": "First"},
        {"role": "user", "content": "Second"}]},
    "empty": {"messages": []},
}

# Extra apply_chat_template kwargs for some (template, conversation) pairs.
EXTRA_KWARGS = [
    ("llama31", "tools", {"tools_in_user_message": False, "date_string": "01 Jan 2025"}),
    ("llama31", "system_user", {"date_string": "02 Feb 2025"}),
    ("llama2", "no_system_multi", {"USE_DEFAULT_PROMPT": True}),
]


def render(template, special_tokens, conversation, add_generation_prompt, extra):
    kwargs = dict(special_tokens)
    kwargs.update(extra)
    try:
        text = template.render(messages=conversation["messages"],
                               tools=conversation.get("tools"), documents=None,
                               add_generation_prompt=add_generation_prompt, **kwargs)
        return {"expected": text}
    except Exception as e:  # transformers lets every render error propagate
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    env = make_environment()
    out = {"now": FIXED_NOW, "templates": {}, "cases": []}
    for name, special_tokens in TEMPLATES.items():
        source = (TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")
        out["templates"][name] = {"source": source, "special_tokens": special_tokens}
        template = env.from_string(source)
        runs = [(conv, {}) for conv in CONVERSATIONS]
        runs += [(conv, extra) for (t, conv, extra) in EXTRA_KWARGS if t == name]
        for conv_name, extra in runs:
            conversation = CONVERSATIONS[conv_name]
            for agp in (False, True):
                case = {"template": name, "conversation": conv_name,
                        "messages": conversation["messages"],
                        "tools": conversation.get("tools"),
                        "add_generation_prompt": agp, "extra_kwargs": extra}
                case.update(render(template, special_tokens, conversation, agp, extra))
                out["cases"].append(case)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum(1 for c in out["cases"] if "error" in c)
    print(f"wrote {len(out['cases'])} cases ({errors} errors) to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
