// `TrainingClient`: the generated per-operation methods, plus the few friendly ones the
// product's example names (startTraining, getStatus, getMetrics) and the walk-through uses.
import type { Download } from "./download.js";
import { Operations } from "./operations.js";
import type { ServerEvent } from "./sse.js";
import type { ClientOptions, RequestOptions } from "./transport.js";
import type { FormBody, JobState, JsonBody, JsonResult } from "./types.js";

export type StartTrainingRequest = JsonBody<"jobs_start_job">;
export type StartTrainingResponse = JsonResult<"jobs_start_job">;
export type JobStatus = JsonResult<"jobs_job_status">;
export type JobMetrics = JsonResult<"jobs_job_metrics">;
export type DatasetUpload = JsonResult<"datasets_upload_dataset">;

/** The payload of an `event: status` (the job's status changed; the last one is final). */
export interface StatusEventData {
  kind: "status";
  status: JobState;
  error: string | null;
  [key: string]: unknown;
}

/** The payload of an `event: metric`: one `metrics.jsonl` event of the run. */
export interface MetricEventData {
  kind: "metric";
  type: "train" | "eval" | "checkpoint" | "status" | (string & {});
  step?: number;
  loss?: number;
  eval_loss?: number;
  [key: string]: unknown;
}

/** A job's live event, narrowed on `event`. (The stream's payloads are not in the OpenAPI document.) */
export type JobEvent =
  | (ServerEvent<StatusEventData> & { event: "status" })
  | (ServerEvent<MetricEventData> & { event: "metric" });

/** The final job states: the events stream closes after one of them. */
export const FINAL_STATES: readonly JobState[] = ["completed", "failed", "cancelled"];

/** The text fields of a dataset upload; `column_mapping` may be given as an object. */
export type UploadFields = Omit<FormBody<"datasets_upload_dataset">, "file" | "column_mapping"> & {
  column_mapping?: Record<string, unknown> | string | null;
  /** The file name sent (its extension picks the format under `auto`; its stem is the default name). */
  filename?: string;
};

/**
 * A client for one workbench server: `new TrainingClient({ baseUrl, token })`.
 *
 * One method per operation of `/openapi.json`, named after its operationId (`jobsStartJob`,
 * `resultsDownloadModel`…; see `METHOD_NAMES`), returning the server's JSON. A non-2xx answer
 * throws `WorkbenchError` (`status`, `code`, `message`, `field`).
 */
export class TrainingClient extends Operations {
  constructor(options: ClientOptions) {
    super(options);
  }

  /** Queue a training job: `config` is a saved config id, a template name or a config object. */
  startTraining(request: StartTrainingRequest, options?: RequestOptions): Promise<StartTrainingResponse> {
    return this.jobsStartJob(request, options);
  }

  /** The job's status: state, step, loss, ETA and the controls that apply now. */
  getStatus(jobId: string, options?: RequestOptions): Promise<JobStatus> {
    return this.jobsJobStatus(jobId, options);
  }

  /** The job's logged metrics (train and eval points). */
  getMetrics(jobId: string, options?: RequestOptions): Promise<JobMetrics> {
    return this.jobsJobMetrics(jobId, options);
  }

  /** Upload a JSONL or CSV file (a Blob/File, bytes, or the text itself); the server validates it. */
  uploadDataset(file: Blob | ArrayBuffer | ArrayBufferView | string, fields: UploadFields = {},
                options?: RequestOptions): Promise<DatasetUpload> {
    const { filename, column_mapping, ...rest } = fields;
    const named = typeof File !== "undefined" && file instanceof File;
    const upload = named && !filename ? file
      : new File([file as BlobPart], filename ?? (named ? (file as File).name : "upload.jsonl"));
    const mapping = column_mapping && typeof column_mapping === "object" ? JSON.stringify(column_mapping) : column_mapping;
    return this.datasetsUploadDataset({ ...rest, column_mapping: mapping, file: upload }, options);
  }

  /**
   * The job's events over SSE, as they happen: its metrics history first (unless
   * `fromStart: false`), then live ones, ending after the final `status` event.
   */
  events(jobId: string, { fromStart = true, ...options }: { fromStart?: boolean } & RequestOptions = {}):
      AsyncGenerator<JobEvent, void, undefined> {
    return this.liveJobEvents(jobId, { from_start: fromStart }, options) as AsyncGenerator<JobEvent, void, undefined>;
  }

  /** Stream a checkpoint (`final`, `checkpoint-N`, `latest`) or the whole output folder as a zip. */
  downloadModel(jobId: string, query: { checkpoint?: string } = {}, options?: RequestOptions): Promise<Download> {
    return this.resultsDownloadModel(jobId, query, options);
  }
}
