// Server-sent events read from a fetch body, so a stream works with a bearer header
// (the browser's EventSource cannot send one) and in Node without a polyfill.

/** One event: its name (`message` when unnamed), its data (JSON-decoded when it is JSON) and the last id. */
export interface ServerEvent<D = unknown> {
  event: string;
  data: D;
  id: string | null;
}

/** The lines of a byte stream, split on `\n`, `\r\n` or `\r` (WHATWG), decoded as UTF-8. */
export async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i + 1 === buffer.length && !done) break; // a \r\n may be split across chunks
        yield buffer.slice(start, i);
        if (c === "\r" && buffer[i + 1] === "\n") i++;
        start = i + 1;
      }
      buffer = buffer.slice(start);
      if (done) {
        if (buffer) yield buffer;
        return;
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined); // a caller that stops early closes the connection
  }
}

/** Events from SSE lines: `:` comments skipped, multi-line `data` joined, a blank line ends an event. */
export async function* parseSse(source: AsyncIterable<string>): AsyncGenerator<ServerEvent, void, undefined> {
  let event: string | null = null;
  let data: string[] = [];
  let id: string | null = null;
  const flush = (): ServerEvent | null => {
    const out = data.length ? { event: event ?? "message", data: decode(data.join("\n")), id } : null;
    event = null;
    data = [];
    return out;
  };
  for await (const line of source) {
    if (line === "") {
      const item = flush();
      if (item) yield item;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
    else if (name === "id" && !value.includes("\0")) id = value;
  }
  // an event the stream ended before the blank line of is dropped, as EventSource drops it
}

function decode(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
