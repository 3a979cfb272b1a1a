// The one error the SDK throws for an answer the server refused.
import type { Schema } from "./types.js";

/** The server's error body: `{"success": false, "error": {code, message, field?, details?}}`. */
export type ErrorBody = Schema<"Error">;

/**
 * A non-2xx answer (or an error event on a stream). `code` is the API's error code
 * (`NOT_FOUND`, `INVALID_INPUT`, `CONFLICT`…), `field` the dotted input field it is about.
 */
export class WorkbenchError extends Error {
  override readonly name = "WorkbenchError";
  /** The HTTP status; 0 for an error the server reported inside a stream that had begun. */
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  readonly details: unknown;

  constructor(init: { status: number; code: string; message: string; field?: string | null; details?: unknown }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.field = init.field ?? undefined;
    this.details = init.details;
  }

  override toString(): string {
    return `${this.name}: ${this.status} ${this.code}: ${this.message}${this.field ? ` (field: ${this.field})` : ""}`;
  }

  /** Reads the server's error shape out of a parsed body; whatever else it holds becomes the message. */
  static fromBody(status: number, body: unknown, fallback: string): WorkbenchError {
    let code = `HTTP_${status}`;
    let message = fallback;
    let field: string | undefined;
    let details: unknown;
    const err = isObject(body) ? body.error : undefined;
    if (isObject(err)) {
      code = typeof err.code === "string" && err.code ? err.code : code;
      message = typeof err.message === "string" && err.message ? err.message : message;
      field = typeof err.field === "string" ? err.field : undefined;
      details = err.details;
    } else if (typeof err === "string") {
      message = err; // {"success": false, "error": "Cannot delete global models"}
    } else if (isObject(body) && typeof body.detail === "string") {
      message = body.detail;
    }
    return new WorkbenchError({ status, code, message, field, details });
  }

  /** The error of a refused response (its body is read here). */
  static async fromResponse(response: Response): Promise<WorkbenchError> {
    const text = await response.text().catch(() => "");
    const fallback = response.statusText || `HTTP ${response.status}`;
    try {
      return WorkbenchError.fromBody(response.status, JSON.parse(text), fallback);
    } catch {
      return new WorkbenchError({ status: response.status, code: `HTTP_${response.status}`,
                                  message: text.trim().slice(0, 500) || fallback });
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
