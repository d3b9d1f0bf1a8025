"""Records the cassettes of this folder from a running llama-cpp-python server.

    python -m llama_cpp.server --model SmolLM2-135M-Instruct.Q4_1.gguf --model_alias smollm2 \
        --api_key test-key --host 127.0.0.1 --port 8765 --n_threads 1 --seed 7
    python record.py http://127.0.0.1:8765

Each request body is the one Baton's `openai` adapter sends (the tests check that it still
is); the response (status, content type, body or stream chunks) is kept as the server sent it.
Standard library only; loopback only.
"""

import http.client
import json
import re
import sys
import urllib.parse
from pathlib import Path

HERE = Path(__file__).parent
KEY = "test-key"

COLOUR = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
    "additionalProperties": False,
}
INSTRUCTION = (
    "Reply with one JSON value that matches this JSON Schema, and nothing else:\n"
    + json.dumps(COLOUR, separators=(",", ":"))
)
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def base(prompt, max_tokens):
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def colour(**extra):
    body = base("Name one colour of the sky or grass, as JSON.", 24)
    body.update(extra)
    return body


def with_instruction(body):
    body["messages"].insert(0, {"role": "system", "content": INSTRUCTION})
    return body


EXCHANGES = {
    "json_schema_refused": (
        "llama-cpp-python 0.3.36 refuses response_format json_schema: HTTP 500 with a validation error",
        colour(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "colour", "schema": COLOUR},
            }
        ),
    ),
    "json_object": (
        "llama-cpp-python 0.3.36: json_object with the schema (it constrains the answer), the schema in a system message",
        with_instruction(colour(response_format={"type": "json_object", "schema": COLOUR})),
    ),
    "structured_tool": (
        "llama-cpp-python 0.3.36: structured output as a forced call of a function whose parameters are the schema",
        colour(
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "colour",
                        "description": "Give the final answer as the arguments of this function, matching its parameters.",
                        "parameters": COLOUR,
                    },
                }
            ],
            tool_choice={"type": "function", "function": {"name": "colour"}},
        ),
    ),
    "tool_call": (
        "llama-cpp-python 0.3.36: a streamed call of the tool named in tool_choice",
        dict(
            base("What is the weather in Paris?", 24),
            tools=[
                {
                    "type": "function",
                    "function": {"name": n, "description": d, "parameters": CITY},
                }
                for n, d in [
                    ("get_weather", "Current weather in a city"),
                    ("get_time", "Local time in a city"),
                ]
            ],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
    ),
    "stream": (
        "llama-cpp-python 0.3.36: a streamed text answer with usage",
        base("Count from one to five.", 12),
    ),
}


def record(url, name, description, body):
    u = urllib.parse.urlparse(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    headers = {
        "authorization": f"Bearer {KEY}",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    raw = resp.read().decode("utf-8")
    content_type = resp.getheader("content-type", "")
    response = {"status": resp.status, "headers": {"content-type": content_type}}
    if content_type.startswith("text/event-stream"):
        # One chunk per event, as they were written.
        response["chunks"] = [c for c in re.split(r"(?<=\r\n\r\n)|(?<=\n\n)", raw) if c]
    else:
        try:
            response["body"] = json.loads(raw)
        except ValueError:
            response["body"] = raw
    cassette = {
        "description": description,
        "request": {
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": {"authorization": f"Bearer {KEY}", "accept": "text/event-stream"},
            "body": body,
        },
        "response": response,
    }
    (HERE / f"{name}.json").write_text(json.dumps(cassette, indent=2) + "\n")
    print(name, resp.status, content_type)


if __name__ == "__main__":
    for name, (description, body) in EXCHANGES.items():
        record(sys.argv[1].rstrip("/"), name, description, body)
