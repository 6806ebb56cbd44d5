"""The OpenAI chat-completions protocol as tuneforge reads it: the request schema, OpenAI-shaped
errors, request -> canonical conversation (see api.py's docstring for the role mapping), and tool
calls parsed back out of generated text."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.example import Message

MAX_N = 16  # choices per request: each one is a full generation in the batch
MAX_STOP = 16
GREEDY_BELOW = 1e-5  # the engines' own threshold: temperature 0 means greedy, as in OpenAI's API

# ---------------------------------------------------------------------------- request schema
class _Open(BaseModel):
    """OpenAI clients send fields we do not use (seed, user, logprobs ...): accept and ignore them."""

    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: str
    text: str | None = None


class FunctionCall(_Open):
    name: str
    arguments: str | dict[str, Any] | None = None  # OpenAI sends a JSON string


class ToolCall(_Open):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"] = "function"
    function: FunctionDef


class StreamOptions(_Open):
    include_usage: bool = False


class ChatCompletionRequest(_Open):
    model: str | None = None  # any name is accepted: this server has one model
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Any = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None


# ---------------------------------------------------------------------------- errors
class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    if not errors:
        return APIError(400, "invalid request")
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg", "invalid request"))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return APIError(400, message + more, code="invalid_value", param=where or None)


# ---------------------------------------------------------------------------- request -> conversation
def _text(message: ChatMessage, index: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type == "image_url":  # the picture goes where its part is (request_images reads it)
            texts.append("<image>")
            continue
        if part.type != "text" or part.text is None:
            raise APIError(400, f"messages[{index}]: only text and image_url content is supported (got a "
                                f"'{part.type}' part)", param=f"messages.{index}.content")
        texts.append(part.text)
    return "".join(texts)


def has_images(req: ChatCompletionRequest) -> bool:
    return any(part.type == "image_url" for message in req.messages if isinstance(message.content, list)
               for part in message.content)


def request_images(req: ChatCompletionRequest) -> list[Any]:
    """The request's image_url parts as PIL images, in order: data: URLs and local files (file:// or a path);
    the server never fetches from the network."""
    images = []
    for index, message in enumerate(req.messages):
        for part in message.content if isinstance(message.content, list) else []:
            if part.type == "image_url":
                images.append(_image(part, f"messages.{index}.content"))
    return images


def _image(part: ContentPart, param: str) -> Any:
    import base64
    import binascii
    import io
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    spec = (part.model_extra or {}).get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise APIError(400, "an image_url part needs {\"url\": ...}", param=param)
    try:
        if url.startswith("data:"):
            source: Any = io.BytesIO(base64.b64decode(url.partition(",")[2], validate=True))
        elif url.startswith(("http://", "https://")):
            raise APIError(400, "image URLs on the network are not fetched; send the image as a data: URL (base64) "
                                "or a file path on the server", param=param)
        else:
            source = Path(url.removeprefix("file://")).expanduser()
        with Image.open(source) as image:
            return image.convert("RGB")
    except (OSError, ValueError, binascii.Error, UnidentifiedImageError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise APIError(400, f"cannot read the image ({first})", param=param) from None


def _call_json(calls: list[ToolCall]) -> str:
    out = []
    for call in calls:
        args: Any = call.function.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass  # keep the model's raw text; the template writes it as it is
        out.append({"name": call.function.name, "arguments": {} if args is None else args})
    return json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False)


def to_conversation(req: ChatCompletionRequest) -> tuple[list[Message], str | None, str | None]:
    """(messages, system, tools JSON) in tuneforge's roles; APIError 400 for what no template can render."""
    items = list(enumerate(req.messages))
    system = None
    if items[0][1].role in ("system", "developer"):
        system = _text(items[0][1], 0) or ""
        items = items[1:]
    messages: list[Message] = []
    origin: list[int] = []  # request index of each canonical message, for error messages
    for index, message in items:
        role = message.role
        if role in ("system", "developer"):
            raise APIError(400, f"messages[{index}]: a {role} message is only allowed as the first message",
                           param=f"messages.{index}.role")
        text = _text(message, index)
        if role == "assistant" and message.tool_calls:
            messages.append(Message("function", _call_json(message.tool_calls)))
        elif role == "assistant":
            messages.append(Message("assistant", text or ""))
        elif role in ("tool", "function"):
            if text is None:
                raise APIError(400, f"messages[{index}]: a tool message needs content", param=f"messages.{index}")
            if messages and messages[-1].role == "observation":  # parallel tool results: one turn
                messages[-1].content += "\n" + text
                continue
            messages.append(Message("observation", text))
        else:
            if text is None:
                raise APIError(400, f"messages[{index}]: a user message needs content", param=f"messages.{index}")
            messages.append(Message("user", text))
        origin.append(index)
    if not messages:
        raise APIError(400, "messages: there is no user message after the system message", param="messages")
    for k, message in enumerate(messages):
        wanted = ("user", "observation") if k % 2 == 0 else ("assistant", "function")
        if message.role not in wanted:
            index = origin[k]
            expected = "a user or tool message" if k % 2 == 0 else "an assistant message"
            raise APIError(400, f"messages[{index}]: expected {expected} here, got role "
                                f"'{req.messages[index].role}' (after an optional system message, roles "
                                "alternate user/tool and assistant)", param=f"messages.{index}.role")
    if messages[-1].role not in ("user", "observation"):
        raise APIError(400, "the last message must be a user or tool message (the model answers it)",
                       param="messages")
    tools = None
    if req.tools and req.tool_choice != "none":
        tools = json.dumps([t.function.model_dump(exclude_none=True) for t in req.tools], ensure_ascii=False)
    return messages, system, tools


def stop_list(stop: str | list[str] | None) -> list[str]:
    words = [stop] if isinstance(stop, str) else list(stop or [])
    if len(words) > MAX_STOP:
        raise APIError(400, f"stop: at most {MAX_STOP} sequences", param="stop")
    return [w for w in words if w]


def generation_overrides(req: ChatCompletionRequest, stops: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    greedy = False
    if req.temperature is not None:
        greedy = req.temperature <= GREEDY_BELOW
        out["temperature"] = req.temperature
        out["do_sample"] = not greedy  # an explicit temperature > 0 samples, whatever the YAML says
    if req.top_p is not None and not greedy:
        out["top_p"] = req.top_p
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens:
        out["max_new_tokens"] = max_tokens
    if stops:
        out["stop"] = stops
    return out


# ---------------------------------------------------------------------------- responses
TOOL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """A model answer -> (content, tool_calls): Qwen-style <tool_call> blocks or a bare JSON call."""
    blocks = TOOL_BLOCK.findall(text)
    candidates = blocks or [text.strip()]
    calls = []
    for block in candidates:
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            return text, []
        for item in value if isinstance(value, list) else [value]:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)):
                return text, []
            args = item.get("arguments", item.get("parameters", {}))
            args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                          "function": {"name": item["name"], "arguments": args}})
    content = TOOL_BLOCK.sub("", text).strip() if blocks else ""
    return content or None, calls
