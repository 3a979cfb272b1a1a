// The README's walk-through, verbatim (tests/clients checks it), then the error type and a few
// calls the generated types must refuse; `npm run build` type-checks it against the built package.
//
//   WORKBENCH_TOKEN=$(workbench token) node --experimental-strip-types examples/quickstart.ts  (Node 22.6+)
import { createWriteStream, openAsBlob } from "node:fs";
import { pipeline } from "node:stream/promises";
import { TrainingClient, WorkbenchError } from "@workbench/client";

const wb = new TrainingClient({ baseUrl: "http://127.0.0.1:8000", token: process.env.WORKBENCH_TOKEN });
const { dataset } = await wb.uploadDataset(await openAsBlob("chats.jsonl"), { name: "support", filename: "chats.jsonl" });
const { config } = await wb.configsCreateConfig({ name: "mine", template_type: "lora", config_json: { training: { max_steps: 100 } } });
const job = await wb.startTraining({ model: "tiny-chat", dataset: dataset.id, config: config.id });
for await (const ev of wb.events(job.job_id)) {        // SSE, live, until the final status
  if (ev.event === "metric" && ev.data.type === "train") console.log(ev.data.step, ev.data.loss);
  if (ev.event === "status") console.log(ev.data.status);
}
console.log(await wb.getStatus(job.job_id), (await wb.getMetrics(job.job_id)).metrics.length);
const zip = await wb.downloadModel(job.job_id, { checkpoint: "final" });   // streamed, never all in memory
await pipeline(zip, createWriteStream(zip.filename ?? "model.zip"));

try {
  await wb.getStatus("job-0000000000");
} catch (err) {
  if (!(err instanceof WorkbenchError)) throw err;
  console.log(err.status, err.code, err.message, err.field);  // 404 NOT_FOUND …
}

// The generated types hold every call to the document: these must not compile.
// @ts-expect-error startTraining needs a dataset
await wb.startTraining({ model: "tiny-chat" });
// @ts-expect-error no such field in a config
await wb.configsCreateConfig({ name: "x", template_type: "lora", nonsense: 1 });
// @ts-expect-error a job's status has no such state
if ((await wb.getStatus(job.job_id)).status === "finished") console.log("never");
// @ts-expect-error a job id is a string
await wb.getMetrics(42);
