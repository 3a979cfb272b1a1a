// The request and response types of an operation, read off the generated `operations` interface,
// so every method's signature follows the OpenAPI document (nothing here names a field).
import type { components, operations } from "./schema.js";

type Op<K extends keyof operations> = operations[K];
type Content<T> = T extends { content: infer C } ? C : never;
type SuccessCode = 200 | 201 | 202 | 203 | 204 | 206;

/** The JSON body an operation takes. */
export type JsonBody<K extends keyof operations> =
  Content<NonNullable<Op<K>["requestBody"]>> extends { "application/json": infer B } ? B : never;

/** The multipart form an operation takes: text fields, and Blobs (or File) for its files. */
export type FormBody<K extends keyof operations> =
  Content<NonNullable<Op<K>["requestBody"]>> extends { "multipart/form-data": infer F } ? F : never;

/** An operation's query parameters. */
export type QueryOf<K extends keyof operations> =
  Op<K>["parameters"] extends { query?: infer Q } ? NonNullable<Q> : never;

/** What a successful answer holds (a union where an operation has several 2xx codes). */
export type JsonResult<K extends keyof operations> = {
  [C in Extract<keyof Op<K>["responses"], SuccessCode>]:
    Content<Op<K>["responses"][C]> extends { "application/json": infer T } ? T : never;
}[Extract<keyof Op<K>["responses"], SuccessCode>];

/** A schema of the document by name: `Schema<"JobStatus">`. */
export type Schema<N extends keyof components["schemas"]> = components["schemas"][N];

/** The states a job can be in. */
export type JobState = Schema<"JobStatus">["status"];
