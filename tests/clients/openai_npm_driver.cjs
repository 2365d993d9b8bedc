// Drives the `openai` npm package, unmodified, for the client matrix
// (tests/clients/test_client_matrix_npm.py): one JSON request per line on stdin, one JSON
// answer per line on stdout. The package is loaded from $OPENAI_NPM_DIR.
"use strict";

const path = require("node:path");
const readline = require("node:readline");
const { createRequire } = require("node:module");

const openai = createRequire(path.join(process.env.OPENAI_NPM_DIR, "package.json"))("openai");

// The package's error classes the matrix tells apart, most specific first.
const ERRORS = [
  "AuthenticationError",
  "PermissionDeniedError",
  "NotFoundError",
  "RateLimitError",
  "BadRequestError",
  "InternalServerError",
  "APIConnectionError",
  "APIError",
];

function client(request) {
  return new openai.OpenAI({ baseURL: request.base_url, apiKey: request.key, maxRetries: 0 });
}

function usageOf(usage) {
  if (!usage) return null;
  return {
    prompt: usage.prompt_tokens,
    completion: usage.completion_tokens,
    total: usage.total_tokens,
    cached: usage.prompt_tokens_details?.cached_tokens ?? null,
  };
}

async function chat(request) {
  const params = { model: request.model, messages: request.messages };
  if (request.tools) params.tools = request.tools;
  if (request.stream) {
    params.stream = true;
    if (request.include_usage) params.stream_options = { include_usage: true };
  }
  const { data, response } = await client(request).chat.completions.create(params).withResponse();
  const cache = response.headers.get("x-cachefleet-cache");
  if (!request.stream) {
    const message = data.choices[0].message;
    const calls = (message.tool_calls ?? []).map((call) => ({
      id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
    }));
    return { id: data.id, text: message.content, tool_calls: calls, usage: usageOf(data.usage), cache };
  }
  let text = null;
  let usage = null;
  const calls = [];
  const ids = new Set();
  for await (const chunk of data) {
    ids.add(chunk.id);
    if (chunk.usage) usage = usageOf(chunk.usage);
    for (const choice of chunk.choices) {
      const delta = choice.delta;
      if (typeof delta.content === "string") text = (text ?? "") + delta.content;
      for (const piece of delta.tool_calls ?? []) {
        calls[piece.index] ??= { id: null, name: "", arguments: "" };
        const call = calls[piece.index];
        if (piece.id) call.id = piece.id;
        call.name += piece.function?.name ?? "";
        call.arguments += piece.function?.arguments ?? "";
      }
    }
  }
  if (ids.size !== 1) throw new Error(`one stream, one id: got ${[...ids]}`);
  return { id: [...ids][0], text, tool_calls: calls, usage, cache };
}

async function embed(request) {
  const { data, response } = await client(request)
    .embeddings.create({ model: request.model, input: request.input })
    .withResponse();
  return {
    vectors: data.data.map((item) => item.embedding),
    cache: response.headers.get("x-cachefleet-cache"),
  };
}

async function models(request) {
  const { data, response } = await client(request).models.list().withResponse();
  return { ids: data.data.map((model) => model.id), cache: response.headers.get("x-cachefleet-cache") };
}

async function respond(request) {
  const params = { model: request.model, input: request.input, stream: request.stream };
  if (request.store !== undefined) params.store = request.store;
  const { data, response } = await client(request).responses.create(params).withResponse();
  const cache = response.headers.get("x-cachefleet-cache");
  if (!request.stream) return { text: data.output_text, cache };
  let text = "";
  let completed = null;
  for await (const event of data) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") completed = event.response;
  }
  if (completed === null) throw new Error("the stream ended without response.completed");
  return { text, cache };
}

const OPERATIONS = { chat, embed, models, respond };

async function answer(line) {
  const request = JSON.parse(line);
  try {
    return { result: await OPERATIONS[request.op](request) };
  } catch (error) {
    const name = ERRORS.find((candidate) => error instanceof openai[candidate]);
    return {
      error: { name: name ?? error.constructor.name, status: error.status ?? null, message: String(error.message) },
    };
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim()) process.stdout.write(JSON.stringify(await answer(line)) + "\n");
  }
}

main();
