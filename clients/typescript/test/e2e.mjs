#!/usr/bin/env node
// End to end against a live `workbench serve`, through the built package only: upload a dataset,
// start a tiny-chat job, follow its events to `completed`, fetch its metrics, download its
// checkpoint zip; and the error shape on the way. `tests/clients/test_typescript_sdk.py` runs it.
//
//   WORKBENCH_URL=http://127.0.0.1:8000 WORKBENCH_TOKEN=wb_... E2E_DATASET=chats.jsonl \
//   E2E_CONFIG='{"training": {"max_steps": 10}}' E2E_OUT=/tmp/out node test/e2e.mjs
//
// Prints one JSON summary on stdout (the Python test checks the zip it names); exits non-zero
// on the first failed assertion.
import assert from "node:assert/strict";
import { createWriteStream, openAsBlob } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";

import { TrainingClient, WorkbenchError } from "../dist/index.js";

const env = (name) => process.env[name] ?? assert.fail(`${name} is not set`);
const baseUrl = env("WORKBENCH_URL");
const config = JSON.parse(env("E2E_CONFIG"));
const JOB_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 300_000);
const log = (...args) => console.error("[e2e]", ...args);

/** The WorkbenchError a call is refused with. */
async function refusal(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof WorkbenchError, `expected a WorkbenchError, got ${err}`);
    return { status: err.status, code: err.code, message: err.message, field: err.field ?? null };
  }
  assert.fail("the call was expected to be refused");
}

const wb = new TrainingClient({ baseUrl, token: env("WORKBENCH_TOKEN") });
const summary = { errors: {} };

assert.deepEqual(await wb.health(), { status: "ok" });
summary.errors.no_token = await refusal(new TrainingClient({ baseUrl }).jobsListJobs());
summary.errors.unknown_job = await refusal(wb.getStatus("job-0000000000"));

const dataPath = env("E2E_DATASET");
const { dataset } = await wb.uploadDataset(await openAsBlob(dataPath), { name: "ts e2e", filename: path.basename(dataPath) });
summary.dataset = { id: dataset.id, samples: dataset.samples, name: dataset.name };
log("uploaded", dataset.id, dataset.samples, "samples");

summary.errors.bad_override = await refusal(wb.startTraining({
  model: "tiny-chat", dataset: dataset.id, config: "lora", overrides: { training: { learning_rate: -1 } },
}));

const created = await wb.configsCreateConfig({ name: "ts e2e", template_type: "lora", config_json: config });
assert.equal(created.config.is_validated, true, JSON.stringify(created.config.validation_errors));

const started = await wb.startTraining({ model: "tiny-chat", dataset: dataset.id, config: created.config.id });
const jobId = started.job_id;
summary.started = started;
log("started", jobId, started.status);

const events = [];
const t0 = Date.now();
for await (const ev of wb.events(jobId, { signal: AbortSignal.timeout(JOB_TIMEOUT_MS) })) {
  events.push({ event: ev.event, data: ev.data, t: (Date.now() - t0) / 1000 });
  if (ev.event === "status") log("status", ev.data.status);
}
summary.events = events.map(({ event, data }) => ({ event, status: data.status ?? null, type: data.type ?? null,
                                                    step: data.step ?? null }));
summary.stream_seconds = (Date.now() - t0) / 1000;
const last = events.at(-1);
assert.equal(last?.event, "status", "the stream must end with the final status");
assert.equal(last.data.status, "completed", `the job ended ${last.data.status}: ${last.data.error}`);

const status = await wb.getStatus(jobId);
summary.status = { status: status.status, current_step: status.current_step, total_steps: status.total_steps,
                   progress: status.progress };
const metrics = await wb.getMetrics(jobId);
summary.metrics = { total_points: metrics.total_points, count: metrics.metrics.length,
                    loss_steps: metrics.metrics.filter((m) => typeof m.loss === "number").map((m) => m.step) };

// a finished job's stream without the history: just its final status, then the end
const replay = [];
for await (const ev of wb.events(jobId, { fromStart: false })) replay.push([ev.event, ev.data.status ?? null]);
summary.replay = replay;

// the WebSocket operation gives the SSE stream's items (Node 20 needs --experimental-websocket)
assert.equal(typeof WebSocket, "function", "run with node --experimental-websocket");
const collect = async (stream) => {
  const items = [];
  for await (const ev of stream) items.push([ev.event, ev.data]);
  return items;
};
const sseReplay = await collect(wb.events(jobId));
const wsReplay = await collect(wb.liveJobEventsWs(jobId, { signal: AbortSignal.timeout(60_000) }));
assert.deepEqual(wsReplay, sseReplay);
summary.websocket = { events: wsReplay.length, last: wsReplay.at(-1)?.[1]?.status ?? null };
summary.errors.ws_unknown_job = await refusal(collect(wb.liveJobEventsWs("job-0000000000")));

const zip = await wb.downloadModel(jobId, { checkpoint: "final" });
assert.ok(zip.filename, "the download names its file");
const out = path.join(env("E2E_OUT"), zip.filename);
let bytes = 0;
let chunks = 0;
async function* counted(source) {
  for await (const chunk of source) {
    assert.ok(chunk instanceof Uint8Array);
    bytes += chunk.length;
    chunks += 1;
    yield chunk;
  }
}
await pipeline(counted(zip), createWriteStream(out));  // the Download itself is the async iterable
summary.download = { path: out, filename: zip.filename, bytes, chunks, content_type: zip.contentType };

summary.job_id = jobId;
process.stdout.write(JSON.stringify(summary) + "\n");
