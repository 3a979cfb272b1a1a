// The TypeScript SDK of the Fine-Tune Workbench REST API.
export {
  FINAL_STATES,
  TrainingClient,
  type DatasetUpload,
  type JobEvent,
  type JobMetrics,
  type JobStatus,
  type MetricEventData,
  type StartTrainingRequest,
  type StartTrainingResponse,
  type StatusEventData,
  type UploadFields,
} from "./client.js";
export { Download, filenameFromDisposition } from "./download.js";
export { WorkbenchError, type ErrorBody } from "./errors.js";
export { METHOD_NAMES, OPERATIONS, type OperationId } from "./operations.js";
export { lines, parseSse, type ServerEvent } from "./sse.js";
export type {
  ClientOptions,
  OperationSpec,
  RequestOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./transport.js";
export type { FormBody, JobState, JsonBody, JsonResult, QueryOf, Schema } from "./types.js";
export type { components, operations, paths } from "./schema.js";
