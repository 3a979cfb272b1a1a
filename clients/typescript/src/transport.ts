// The HTTP plumbing under every generated method: URLs, the bearer token, bodies, and reading
// answers as JSON, text, SSE, downloads or WebSocket frames. Plain fetch: Node 20+ and browsers.
import { Download } from "./download.js";
import { WorkbenchError } from "./errors.js";
import { type ServerEvent, lines, parseSse } from "./sse.js";

/** What the generator records of each operation (see `OPERATIONS` in operations.ts). */
export interface OperationSpec {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly pathParams: readonly string[];
  readonly query: readonly string[];
  readonly body: "json" | "multipart" | null;
  readonly response: "json" | "text" | "binary" | "sse" | "websocket";
}

/** The arguments of one call, as the generated methods pass them. */
export interface CallInput {
  path?: Record<string, string>;
  query?: object;
  body?: unknown;
  form?: object;
}

/** Per-call options: an abort signal (`AbortSignal.timeout(ms)` for a deadline) and extra headers. */
export interface RequestOptions {
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** The part of the WebSocket API the client uses (the browser's, Node 22's global, or the `ws` package's). */
export interface WebSocketLike {
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8000` (a path prefix is kept). */
  baseUrl: string;
  /** A bearer token (`workbench token`, or `workbench users add NAME` on a shared server). */
  token?: string;
  /** Another fetch (a proxy agent, a test double); default: the global one. */
  fetch?: typeof fetch;
  /** Headers sent on every request. */
  headers?: Record<string, string>;
  /** For the WebSocket operation where there is no global `WebSocket` (Node 20: the `ws` package). */
  WebSocket?: WebSocketConstructor;
}

export abstract class Transport {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;
  readonly #WebSocket: WebSocketConstructor | undefined;

  constructor(options: ClientOptions) {
    if (!options?.baseUrl) throw new TypeError("TrainingClient needs { baseUrl }");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#token = options.token;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("no fetch: use Node 20+ or pass { fetch }");
    this.#fetch = f;
    this.#headers = { ...options.headers };
    this.#WebSocket = options.WebSocket;
  }

  /** The absolute URL of an operation's path with its path and query parameters filled in. */
  url(template: string, path: Record<string, string> = {}, query: object = {}): string {
    const filled = template.replace(/\{([^}:]+)(?::[^}]+)?\}/g, (_, name: string) => {
      const value = path[name];
      if (value === undefined || value === null || value === "") throw new TypeError(`missing path parameter ${name}`);
      return encodeURIComponent(String(value)); // a "/" or "?" in an id cannot reach another route
    });
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined || value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) {
        params.append(key, typeof item === "object" ? JSON.stringify(item) : String(item));
      }
    }
    const qs = params.toString();
    return `${this.baseUrl}${filled}${qs ? `?${qs}` : ""}`;
  }

  /**
   * One raw call for what the SDK does not know yet: `body` is sent as JSON. Resolves to the
   * decoded JSON (undefined when empty); a non-2xx answer throws {@link WorkbenchError}.
   */
  async request(method: string, path: string, init: { query?: object; body?: unknown } & RequestOptions = {}): Promise<unknown> {
    const { query, body, ...options } = init;
    const spec: OperationSpec = { id: "request", method: method.toUpperCase(), path,
                                  pathParams: [], query: [], body: body === undefined ? null : "json",
                                  response: "json" };
    return this.callJson(spec, { query, body }, options);
  }

  protected async send(spec: OperationSpec, input: CallInput, options: RequestOptions = {},
                       accept = "application/json"): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept, ...this.#headers, ...options.headers };
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    let body: BodyInit | undefined;
    if (spec.body === "json" && input.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(input.body);
    } else if (spec.body === "multipart" && input.form !== undefined) {
      body = toFormData(input.form); // fetch sets the multipart Content-Type with its boundary
    }
    const response = await this.#fetch(this.url(spec.path, input.path, input.query), {
      method: spec.method, headers, body, signal: options.signal,
    });
    if (!response.ok) throw await WorkbenchError.fromResponse(response);
    return response;
  }

  protected async callJson(spec: OperationSpec, input: CallInput, options?: RequestOptions): Promise<unknown> {
    const text = await (await this.send(spec, input, options)).text();
    return text ? JSON.parse(text) : undefined;
  }

  protected async callText(spec: OperationSpec, input: CallInput, options?: RequestOptions): Promise<string> {
    return (await this.send(spec, input, options, "text/plain, */*")).text();
  }

  protected async callDownload(spec: OperationSpec, input: CallInput, options?: RequestOptions): Promise<Download> {
    return new Download(await this.send(spec, input, options, "application/zip, application/octet-stream, */*"));
  }

  /** An SSE stream's events until the server closes it; an `error` event throws {@link WorkbenchError}. */
  protected async *callEvents(spec: OperationSpec, input: CallInput,
                              options?: RequestOptions): AsyncGenerator<ServerEvent, void, undefined> {
    const response = await this.send(spec, input, options, "text/event-stream");
    if (!response.body) return;
    for await (const event of parseSse(lines(response.body))) {
      if (event.event === "error") throw WorkbenchError.fromBody(0, event.data, "the stream failed on the server");
      yield event;
    }
  }

  /**
   * A WebSocket's JSON frames as events (`event` is the frame's `kind`), until the server closes.
   * The token goes in the query string: browsers cannot set headers on a WebSocket.
   */
  protected async *callWebSocket(spec: OperationSpec, input: CallInput,
                                 options: RequestOptions = {}): AsyncGenerator<ServerEvent, void, undefined> {
    const WS = this.#WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError("no WebSocket here (Node 20): pass { WebSocket } from the 'ws' package, or use events()");
    const query = { ...input.query, ...(this.#token ? { token: this.#token } : {}) };
    const url = this.url(spec.path, input.path, query).replace(/^http/, "ws");
    const queue: Array<{ frame?: unknown; end?: { code: number; reason: string }; error?: unknown }> = [];
    let wake: (() => void) | null = null;
    const push = (item: (typeof queue)[number]) => {
      queue.push(item);
      wake?.();
    };
    const ws = new WS(url);
    ws.onmessage = (ev) => push({ frame: ev.data });
    ws.onclose = (ev) => push({ end: { code: ev.code, reason: ev.reason } });
    ws.onerror = (ev) => push({ error: ev });
    const abort = () => ws.close(1000);
    options.signal?.addEventListener("abort", abort, { once: true });
    try {
      for (;;) {
        if (!queue.length) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        const item = queue.shift()!;
        if (item.end) {
          if (item.end.code === 1000 || item.end.code === 1005) return;
          throw new WorkbenchError({ status: 0, code: `WS_${item.end.code}`,
                                     message: item.end.reason || "the WebSocket closed abnormally" });
        }
        if (item.error !== undefined) { // a refused handshake (browsers do not say its status) or a broken socket
          const reason = (item.error as { message?: unknown })?.message;
          throw new WorkbenchError({ status: 0, code: "WS_ERROR",
                                     message: typeof reason === "string" && reason ? reason : "the WebSocket failed" });
        }
        const data = decodeFrame(item.frame);
        if (isErrorBody(data)) throw WorkbenchError.fromBody(0, data, "the stream failed on the server");
        const kind = typeof data === "object" && data !== null && "kind" in data ? String(data.kind) : "message";
        yield { event: kind, data, id: null };
      }
    } finally {
      options.signal?.removeEventListener("abort", abort);
      ws.close(1000);
    }
  }
}

function decodeFrame(frame: unknown): unknown {
  const text = typeof frame === "string" ? frame : new TextDecoder().decode(frame as ArrayBuffer);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function isErrorBody(data: unknown): boolean {
  return typeof data === "object" && data !== null && (data as { success?: unknown }).success === false;
}

/** A multipart body: Blobs (and Files, keeping their names) as files, objects as JSON, the rest as text. */
function toFormData(fields: object): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || value === null) continue;
    if (value instanceof Blob) form.append(key, value);
    else if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) form.append(key, new Blob([value as BlobPart]));
    else if (typeof value === "object") form.append(key, JSON.stringify(value));
    else form.append(key, String(value));
  }
  return form;
}
