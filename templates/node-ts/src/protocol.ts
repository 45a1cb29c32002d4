/**
 * The nanoservice wire protocol (docs/protocol.md, protocol 2, table format 1): the parts a
 * thin foreign host needs. Pure functions and types; nothing here talks to NATS.
 */

export const TABLE_FORMAT = 1;
export const TABLES_BUCKET = "nano_tables";

export const H = {
  execution: "Nano-Execution",
  workflow: "Nano-Workflow",
  step: "Nano-Step",
  revision: "Nano-Revision",
  attempt: "Nano-Attempt",
  error: "Nano-Error",
  msgId: "Nats-Msg-Id",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

export interface Retry {
  max_attempts: number;
  backoff: number[];
  retry_on: string[] | null;
}

export interface StepRoute {
  name: string;
  node: string | null;
  config: Record<string, unknown>;
  subject: string;
  consumer: string;
  next: string[];
  retry: Retry;
  timeout: number;
  ack_wait: number;
  concurrency: number;
  keep: string[] | null;
  keep_input: boolean;
  runtime: string | null;
}

export interface RoutingTable {
  format: number;
  workflow: string;
  revision: string;
  stream: { name: string };
  output: string | null;
  steps: Record<string, StepRoute>;
}

export interface Envelope {
  input?: unknown;
  prev?: unknown;
  steps?: Record<string, { output: unknown }>;
  vars?: Record<string, unknown>;
  loops?: Record<string, number>;
  parent?: string;
  parent_revision?: string;
}

/** A table read from KV; throws on a format this host does not know. */
export function parseTable(text: string): RoutingTable {
  const table = JSON.parse(text) as RoutingTable;
  if (table.format !== TABLE_FORMAT) {
    throw new Error(`routing table format ${table.format} is not ${TABLE_FORMAT}`);
  }
  return table;
}

/** Seconds to wait after failed try number `attempt` (1-based); the last value repeats. */
export function retryDelay(retry: Retry, attempt: number): number {
  if (retry.backoff.length === 0) return 0;
  return retry.backoff[Math.min(attempt - 1, retry.backoff.length - 1)];
}

/** De-duplication id of a message from step `from` to step `to` (loop iterations appended). */
export function msgId(execution: string, from: string, to: string, loops?: Record<string, number>): string {
  const base = `${execution}:${from}:${to}`;
  if (!loops || Object.keys(loops).length === 0) return base;
  const suffix = Object.keys(loops)
    .sort()
    .map((k) => `${k}${loops[k]}`)
    .join("-");
  return `${base}:${suffix}`;
}

/** The envelope a step sends on: its output as `prev`, only the outputs later steps read. */
export function forwardEnvelope(step: StepRoute, env: Envelope, output: unknown): Envelope {
  let steps: Record<string, { output: unknown }>;
  if (step.keep === null) {
    steps = { ...(env.steps ?? {}), [step.name]: { output } };
  } else {
    steps = {};
    for (const [name, value] of Object.entries(env.steps ?? {})) {
      if (step.keep.includes(name)) steps[name] = value;
    }
    if (step.keep.includes(step.name)) steps[step.name] = { output };
  }
  const out: Envelope = {};
  if (step.keep_input && env.input !== undefined && env.input !== null) out.input = env.input;
  if (output !== undefined && output !== null) out.prev = output;
  if (Object.keys(steps).length) out.steps = steps;
  if (env.vars && Object.keys(env.vars).length) out.vars = env.vars;
  if (env.loops && Object.keys(env.loops).length) out.loops = env.loops;
  if (env.parent) out.parent = env.parent;
  if (env.parent_revision) out.parent_revision = env.parent_revision;
  return out;
}

/** `text` cut to `limit` characters, saying how much was cut. */
export function clip(text: string, limit = 2048): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length - limit} more characters)`;
}

export interface ErrorInfo {
  type: string;
  message: string;
}

/** An error a retry cannot fix: the step goes straight to its dead letter. */
export class NonRetryableError extends Error {
  override name = "NonRetryableError";
}

export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof Error) return { type: err.name || "Error", message: clip(err.message || err.name) };
  return { type: "Error", message: clip(String(err)) };
}

export function retryable(step: StepRoute, info: ErrorInfo, err: unknown): boolean {
  if (err instanceof NonRetryableError || err instanceof SyntaxError) return false;
  return step.retry.retry_on === null || step.retry.retry_on.includes(info.type);
}
