// A file the server streams (a model zip can be gigabytes): handed over unread, as a stream.

/**
 * A streamed download. Iterate it (`for await (const chunk of dl)`), or pipe `dl.body`
 * (`Readable.fromWeb(dl.body)` in Node, `new Response(dl.body).blob()` in a browser). Read it once.
 */
export class Download implements AsyncIterable<Uint8Array> {
  /** The file name the server suggests (`Content-Disposition`), reduced to its last path part. */
  readonly filename: string | null;
  /** `Content-Length`, when the server sent one (zips are streamed without). */
  readonly size: number | null;
  readonly contentType: string | null;

  constructor(readonly response: Response) {
    this.filename = filenameFromDisposition(response.headers.get("content-disposition"));
    const length = response.headers.get("content-length");
    this.size = length !== null && /^\d+$/.test(length) ? Number(length) : null;
    this.contentType = response.headers.get("content-type");
  }

  /** The bytes as a web stream. */
  get body(): ReadableStream<Uint8Array> {
    if (!this.response.body) throw new Error("the download has no body");
    return this.response.body;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    const reader = this.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      await reader.cancel().catch(() => undefined); // stopping early closes the connection
    }
  }

  /** The whole file in memory: only for small ones (logs); stream models. */
  async bytes(): Promise<Uint8Array> {
    return new Uint8Array(await this.response.arrayBuffer());
  }
}

/** The file name of a `Content-Disposition` header (plain, quoted or RFC 5987 `filename*`), made safe. */
export function filenameFromDisposition(header: string | null): string | null {
  if (!header) return null;
  let name: string | null = null;
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (extended) {
    try {
      name = decodeURIComponent(extended[2].trim());
    } catch {
      name = null;
    }
  }
  if (name === null) {
    const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))/i.exec(header);
    name = plain ? (plain[1] !== undefined ? plain[1].replace(/\\(.)/g, "$1") : plain[2].trim()) : null;
  }
  if (!name) return null;
  const last = name.replace(/\\/g, "/").split("/").pop()!.trim();
  return last && last !== "." && last !== ".." ? last : null;
}
