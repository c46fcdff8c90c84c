// A real MCP client (the official TypeScript SDK) against kb: `kb mcp` over stdio and
// `kb serve`'s /mcp over Streamable HTTP. Driven by tests/it/mcp.rs, which sets up the
// database, ingests sample_docs/ as user A and passes everything in KB_MCP_TEST (JSON):
//   { kb_bin, database_url, url, token_a, token_b, bucket, bucket_id, question, title, passage }
// Every check is an assertion: the script exits non-zero on the first failure, with the
// reason on stderr. On success it prints one JSON line (what it saw) for the Rust test.

import assert from "node:assert/strict";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const config = JSON.parse(process.env.KB_MCP_TEST ?? "");
const TOOLS = ["build_context", "get_document", "list_buckets", "search", "upload_document"];
const log = (...args) => console.error("mcp-client:", ...args);

function client() {
  return new Client({ name: "kb-mcp-test", version: "1.0.0" });
}

function http(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return new StreamableHTTPClientTransport(new URL(config.url), { requestInit: { headers } });
}

/// The structured result of a successful tool call.
async function call(session, name, args) {
  const result = await session.callTool({ name, arguments: args });
  assert.notEqual(result.isError, true, `${name} failed: ${JSON.stringify(result.content)}`);
  assert.ok(result.structuredContent, `${name} returned structured content`);
  const text = result.content.find((c) => c.type === "text");
  assert.deepEqual(JSON.parse(text.text), result.structuredContent, `${name}: the text is the JSON of the result`);
  return result.structuredContent;
}

/// The error text of a tool call that must fail as a tool error (not a protocol error).
async function toolError(session, name, args) {
  const result = await session.callTool({ name, arguments: args });
  assert.equal(result.isError, true, `${name}(${JSON.stringify(args)}) should be a tool error: ${JSON.stringify(result)}`);
  const text = result.content.map((c) => c.text ?? "").join(" ");
  assert.ok(text.length > 0, `${name}: the error says why`);
  return text;
}

/// What user A (who owns sample_docs/) sees, the same over either transport.
async function exerciseOwner(session, label) {
  const tools = await session.listTools();
  assert.deepEqual(tools.tools.map((t) => t.name).sort(), TOOLS, `${label}: the tools`);
  for (const tool of tools.tools) {
    assert.ok(tool.description && tool.description.length > 40, `${label}: ${tool.name} has a description`);
    assert.equal(tool.inputSchema.type, "object", `${label}: ${tool.name} has an input schema`);
  }
  const search = tools.tools.find((t) => t.name === "search");
  for (const field of ["query", "bucket", "bucket_type", "campaign_id", "mode", "limit", "threshold"]) {
    assert.ok(field in search.inputSchema.properties, `${label}: search takes ${field}`);
  }
  assert.deepEqual(search.inputSchema.required, ["query"], `${label}: search requires only query`);

  const buckets = await call(session, "list_buckets", {});
  const samples = buckets.buckets.find((b) => b.name === config.bucket);
  assert.ok(samples, `${label}: list_buckets shows ${config.bucket}: ${JSON.stringify(buckets)}`);
  assert.ok(samples.documents_ready >= 10, `${label}: the bucket's documents are ready`);

  // search: the passage's document among the hits, with the passage.
  const found = await call(session, "search", { query: config.question, bucket: config.bucket, limit: 5 });
  assert.ok(found.hits.length > 0, `${label}: search finds something`);
  const hit = found.hits.find((h) => h.document_title === config.title);
  assert.ok(hit, `${label}: search finds "${config.title}": ${found.hits.map((h) => h.document_title)}`);
  assert.equal(found.hits[0].document_title, config.title, `${label}: the document ranks first`);
  assert.ok(found.hits.some((h) => h.chunk_content.includes(config.passage)), `${label}: a hit holds the passage`);

  // build_context: a passage of that document holding the passage, cited in the text block.
  const context = await call(session, "build_context", { question: config.question, budget: 600 });
  assert.ok(context.tokens <= 600 && context.budget === 600, `${label}: the context fits its budget`);
  const cited = context.passages.find((p) => p.document_title === config.title && p.text.includes(config.passage));
  assert.ok(cited, `${label}: build_context has the passage: ${JSON.stringify(context.passages.map((p) => p.document_title))}`);
  assert.ok(context.text.includes(`[${cited.citation}]`), `${label}: the text block cites [${cited.citation}]`);
  assert.ok(context.text.includes(config.passage), `${label}: the text block holds the passage`);
  context.passages.forEach((p, i) => assert.equal(p.citation, i + 1, `${label}: citations are numbered 1..n`));

  // get_document and the document as a resource.
  const doc = await call(session, "get_document", { document_id: cited.document_id, first_chunk: 0, last_chunk: 1 });
  assert.equal(doc.document.title, config.title);
  assert.deepEqual(doc.chunks.map((c) => c.chunk_index), [0, 1], `${label}: get_document reads the range`);
  assert.equal(doc.next_chunk, 2);
  const resources = await session.listResources();
  assert.ok(resources.resources.some((r) => r.uri === doc.uri), `${label}: the document is a listed resource`);
  const templates = await session.listResourceTemplates();
  assert.equal(templates.resourceTemplates[0].uriTemplate, "kb://documents/{id}");
  const read = await session.readResource({ uri: doc.uri });
  assert.ok(read.contents[0].text.includes(config.passage), `${label}: the resource holds the document's text`);

  // Bad arguments: tool errors the agent can read, and the session goes on.
  const badLimit = await toolError(session, "search", { query: "invite", limit: "many" });
  const badId = await toolError(session, "get_document", { document_id: "not-a-uuid" });
  const badRange = await toolError(session, "search", { query: "invite", limit: 0 });
  const noBucket = await toolError(session, "search", { query: "invite", bucket: "no-such-bucket" });
  const badBudget = await toolError(session, "build_context", { question: "invite", budget: 1 });
  const missing = await toolError(session, "upload_document", { bucket: config.bucket });
  assert.match(badRange, /limit/, `${label}: the error names the argument`);
  assert.match(noBucket, /bucket/, `${label}: the error names the bucket`);
  const after = await call(session, "list_buckets", {});
  assert.equal(after.buckets.length, buckets.buckets.length, `${label}: the session continues after tool errors`);

  return {
    first_hit: found.hits[0].document_title,
    citation: cited.citation,
    passages: context.passages.length,
    tokens: context.tokens,
    document_id: cited.document_id,
    errors: [badLimit, badId, badRange, noBucket, badBudget, missing],
  };
}

async function overStdio() {
  const transport = new StdioClientTransport({
    command: config.kb_bin,
    args: ["mcp"],
    env: { ...process.env, DATABASE_URL: config.database_url, KB_LOG: "warn" },
    stderr: "inherit",
  });
  const session = client();
  await session.connect(transport);
  assert.equal(session.getServerVersion().name, "kb");
  assert.ok(session.getInstructions().includes("build_context"), "the server tells the agent how to use it");
  const seen = await exerciseOwner(session, "stdio");
  await session.close();
  return seen;
}

async function overHttp() {
  // Without a token: refused (401) before any MCP exchange, by a raw request and by the SDK.
  const raw = await fetch(config.url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "search", arguments: { query: config.question } },
    }),
  });
  assert.equal(raw.status, 401, "a call without a token is refused");
  const refused = await client().connect(http(null)).then(
    () => null,
    (e) => String(e),
  );
  assert.ok(refused, "the SDK cannot connect without a token");
  const forged = await client().connect(http(`${config.token_a}x`)).then(
    () => null,
    (e) => String(e),
  );
  assert.ok(forged, "the SDK cannot connect with a bad signature");

  const a = client();
  await a.connect(http(config.token_a));
  const seen = await exerciseOwner(a, "http");

  // upload_document as A: queued, then ready and searchable.
  const uploaded = await call(a, "upload_document", {
    bucket: config.bucket,
    path: "agent-notes/zebra-policy.md",
    title: "Zebra crossing policy",
    content: "# Zebra crossing policy\n\nEvery zebra in the office parking lot has right of way on Thursdays.\n",
  });
  assert.equal(uploaded.outcome, "queued");
  let status = uploaded.status;
  for (let i = 0; i < 300 && status !== "ready"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const doc = await call(a, "get_document", { document_id: uploaded.document_id });
    assert.notEqual(doc.document.status, "failed", `the upload failed: ${doc.document.processing_error}`);
    status = doc.document.processing ? "processing" : doc.document.status;
  }
  assert.equal(status, "ready", "the uploaded document is processed");
  const zebra = await call(a, "search", { query: "zebra right of way", limit: 3 });
  assert.equal(zebra.hits[0].document_id, uploaded.document_id, "the uploaded document is searchable");
  await a.close();

  // User B sees none of A's documents.
  const b = client();
  await b.connect(http(config.token_b));
  const bBuckets = await call(b, "list_buckets", {});
  assert.ok(!bBuckets.buckets.some((x) => x.name === config.bucket), "B does not see A's bucket");
  const bFound = await call(b, "search", { query: config.question, limit: 10, threshold: -1 });
  assert.equal(bFound.hits.length, 0, `B finds none of A's chunks: ${JSON.stringify(bFound.hits)}`);
  const bContext = await call(b, "build_context", { question: config.question, budget: 600, threshold: -1 });
  assert.equal(bContext.passages.length, 0, "B's context has none of A's passages");
  const bDoc = await toolError(b, "get_document", { document_id: seen.document_id });
  const bBucket = await toolError(b, "search", { query: config.question, bucket: config.bucket });
  const bUpload = await toolError(b, "upload_document", { bucket: config.bucket_id, content: "x" });
  const bResources = await b.listResources();
  assert.equal(bResources.resources.length, 0, "B lists no resources of A's");
  const bRead = await b.readResource({ uri: `kb://documents/${seen.document_id}` }).then(
    () => null,
    (e) => String(e),
  );
  assert.ok(bRead, "B cannot read A's document as a resource");
  await b.close();

  return { ...seen, uploaded: uploaded.document_id, refused, b_errors: [bDoc, bBucket, bUpload, bRead] };
}

try {
  const stdio = await overStdio();
  log("stdio: ok");
  const httpSeen = await overHttp();
  log("http: ok");
  console.log(JSON.stringify({ stdio, http: httpSeen }));
} catch (error) {
  log("FAILED:", error?.stack ?? error);
  process.exit(1);
}
