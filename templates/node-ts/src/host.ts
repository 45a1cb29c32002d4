/**
 * A thin foreign host: serves `runtime: node` steps of routing tables stored in KV.
 *
 * One delivery: decode the envelope, call the node (timeout, in-progress heartbeats), publish
 * its output to the `next` steps (or the result), ack only after every PubAck; on failure
 * nak with the step's backoff, and dead-letter when the tries are spent. Each delivery is
 * settled exactly once, in `settle`.
 */
import { connect } from "@nats-io/transport-node";
import { headers as makeHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";

import {
  H,
  TABLES_BUCKET,
  clip,
  errorInfo,
  forwardEnvelope,
  msgId,
  parseTable,
  retryDelay,
  retryable,
  type Envelope,
  type ErrorInfo,
  type RoutingTable,
  type StepRoute,
} from "./protocol.js";

export interface Context {
  execution: string;
  workflow: string;
  step: string;
  attempt: number;
}

export interface NodeDef<I = any, O = any, C = any> {
  name: string;
  handle(input: I, config: C, ctx: Context): O | Promise<O>;
}

export interface HostOptions {
  servers: string;
  /** `workflow.step` names to serve. */
  steps: string[];
  nodes: NodeDef[];
}

const STORE_RETRY_SECONDS = 120;
const DLQ_DATA_LIMIT = 64 * 1024;
const WRONG_LAST_SEQUENCE = 10071;

/** Serves the steps until `stop()`; resolves once every consumer is pulling. */
export async function serve(options: HostOptions): Promise<{ stop(): Promise<void>; nc: NatsConnection }> {
  const nc = await connect({ servers: options.servers.split(","), maxReconnectAttempts: -1, name: "nano-node-ts" });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kv = await new Kvm(nc).open(TABLES_BUCKET);
  const nodes = new Map(options.nodes.map((n) => [n.name, n]));
  const runners: StepRunner[] = [];
  for (const name of options.steps) {
    const [workflow, step] = name.split(".", 2);
    const tables = new Tables(kv, workflow);
    const table = await tables.latest();
    const route = table.steps[step];
    if (!route) throw new Error(`workflow '${workflow}' has no step '${step}'`);
    const node = nodes.get(route.node ?? "");
    if (!node) throw new Error(`step ${name}: node '${route.node}' is not one of ${[...nodes.keys()].join(", ")}`);
    const runner = new StepRunner(js, jsm, tables, step, node);
    await runner.start(table);
    runners.push(runner);
  }
  return {
    nc,
    async stop() {
      await Promise.all(runners.map((r) => r.stop()));
      await nc.drain();
    },
  };
}

/** The tables of one workflow by revision, read from KV (the key's history included). */
class Tables {
  private byRevision = new Map<string, RoutingTable>();
  constructor(private kv: KV, readonly workflow: string) {}

  async latest(): Promise<RoutingTable> {
    const entry = await this.kv.get(this.workflow);
    if (!entry || entry.operation !== "PUT") throw new Error(`no routing table for workflow '${this.workflow}' in ${TABLES_BUCKET}`);
    const table = parseTable(entry.string());
    this.byRevision.set(table.revision, table);
    return table;
  }

  async of(revision: string | undefined): Promise<RoutingTable | undefined> {
    if (!revision) return undefined;
    const known = this.byRevision.get(revision);
    if (known) return known;
    const history = await this.kv.history({ key: this.workflow });
    for await (const entry of history) {
      if (entry.operation !== "PUT") continue;
      const table = parseTable(entry.string());
      this.byRevision.set(table.revision, table);
    }
    return this.byRevision.get(revision);
  }
}

interface Outbound {
  subject: string;
  data: string;
  headers: MsgHdrs;
  msgID: string;
  expectEmpty?: boolean;
}

class StepRunner {
  private stopped = false;
  private inflight = new Set<Promise<void>>();
  private messages?: { stop(): void; close(): Promise<void | Error> };
  private current!: RoutingTable;

  constructor(
    private js: JetStreamClient,
    private jsm: JetStreamManager,
    private tables: Tables,
    private step: string,
    private node: NodeDef,
  ) {}

  async start(table: RoutingTable): Promise<void> {
    this.current = table;
    const route = table.steps[this.step];
    const consumer = await this.js.consumers.get(table.stream.name, route.consumer);
    const messages = await consumer.consume({ max_messages: route.concurrency });
    this.messages = messages;
    (async () => {
      for await (const msg of messages) {
        const task = this.handle(msg).catch((err) => console.error(`${this.step}: ${err}`));
        this.inflight.add(task);
        task.finally(() => this.inflight.delete(task));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.messages?.stop();
    await Promise.allSettled([...this.inflight]);
  }

  private async handle(msg: JsMsg): Promise<void> {
    const revision = msg.headers?.get(H.revision) || undefined;
    const table = await this.tables.of(revision);
    const attempt = msg.info.deliveryCount;
    const execution = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    const route = (table ?? this.current).steps[this.step];
    if (!table) {
      if (attempt < route.retry.max_attempts + 1) return msg.nak(1000);
      return this.deadLetter(msg, route, this.current, execution, { type: "UnknownRevision", message: `no table of revision ${revision}` });
    }
    if (attempt > route.retry.max_attempts) {
      const done = await this.jsm.streams.getMessage(table.stream.name, { last_by_subj: `nano.${table.workflow}._done.${execution}` }).catch(() => null);
      if (done) return msg.ack();
      return this.deadLetter(msg, route, table, execution, {
        type: "InvalidMessageError",
        message: `gave up after ${attempt - 1} deliveries without an outcome (did processing kill the host?)`,
      });
    }
    let env: Envelope;
    let output: unknown;
    const beat = setInterval(() => msg.working(), (route.ack_wait * 1000) / 3);
    try {
      env = JSON.parse(new TextDecoder().decode(msg.data)) as Envelope;
      const ctx: Context = { execution, workflow: table.workflow, step: this.step, attempt };
      output = await withTimeout(Promise.resolve().then(() => this.node.handle(env.prev, route.config, ctx)), route.timeout);
    } catch (err) {
      clearInterval(beat);
      const info = errorInfo(err);
      console.error(`${table.workflow}/${this.step} execution ${execution} attempt ${attempt} failed: ${info.type}: ${clip(info.message, 300)}`);
      if (retryable(route, info, err) && attempt < route.retry.max_attempts) {
        return msg.nak(retryDelay(route.retry, attempt) * 1000);
      }
      return this.deadLetter(msg, route, table, execution, info);
    }
    try {
      await this.store(msg, this.forward(msg, route, table, execution, env, output));
    } finally {
      clearInterval(beat);
    }
  }

  private baseHeaders(msg: JsMsg, route: StepRoute, table: RoutingTable): MsgHdrs {
    const h = makeHeaders();
    h.set(H.step, route.name);
    h.set(H.revision, table.revision);
    for (const name of [H.traceparent, H.tracestate]) {
      const value = msg.headers?.get(name);
      if (value) h.set(name, value);
    }
    if (msg.info.deliveryCount > 1) h.set(H.attempt, String(msg.info.deliveryCount));
    return h;
  }

  private forward(msg: JsMsg, route: StepRoute, table: RoutingTable, execution: string, env: Envelope, output: unknown): Outbound[] {
    if (route.next.length === 0) {
      const h = this.baseHeaders(msg, route, table);
      h.set(H.execution, execution);
      h.set(H.workflow, table.workflow);
      const id = msgId(execution, route.name, "_done");
      const data = JSON.stringify({ output, step: route.name });
      return [{ subject: `nano.${table.workflow}._done.${execution}`, data, headers: h, msgID: id, expectEmpty: true }];
    }
    const data = JSON.stringify(forwardEnvelope(route, env, output));
    return route.next.map((target) => {
      const h = this.baseHeaders(msg, route, table);
      const id = msgId(execution, route.name, target, env.loops);
      return { subject: `${table.steps[target].subject}.${execution}`, data, headers: h, msgID: id };
    });
  }

  private deadLetter(msg: JsMsg, route: StepRoute, table: RoutingTable, execution: string, error: ErrorInfo): Promise<void> {
    const raw = new TextDecoder().decode(msg.data);
    const truncated = msg.data.length > DLQ_DATA_LIMIT;
    let data: unknown = truncated ? raw.slice(0, 1024) : raw;
    if (!truncated) {
      try {
        data = raw ? JSON.parse(raw) : null;
      } catch {
        data = raw;
      }
    }
    const delivered: Record<string, string> = {};
    for (const key of msg.headers?.keys() ?? []) delivered[key] = msg.headers!.get(key);
    const body: Record<string, unknown> = {
      step: route.name,
      error,
      attempts: msg.info.deliveryCount,
      subject: msg.subject,
      data,
      headers: delivered,
      stream_seq: msg.seq,
    };
    if (truncated) body.truncated = true;
    const h = makeHeaders();
    h.set(H.execution, execution);
    h.set(H.workflow, table.workflow);
    h.set(H.step, route.name);
    h.set(H.revision, table.revision);
    h.set(H.error, clip(`${error.type}: ${error.message}`, 512));
    const id = msgId(execution, route.name, "_dlq");
    return this.store(msg, [{ subject: `nano.${table.workflow}._dlq.${execution}`, data: JSON.stringify(body), headers: h, msgID: id }]);
  }

  /** Publish until every message is stored (an outage is not a node failure), then ack. */
  private async store(msg: JsMsg, out: Outbound[]): Promise<void> {
    const deadline = Date.now() + STORE_RETRY_SECONDS * 1000;
    let wait = 100;
    let pending = out;
    while (pending.length) {
      const results = await Promise.allSettled(pending.map((m) => this.publish(m)));
      pending = pending.filter((_, i) => results[i].status === "rejected");
      if (!pending.length) break;
      if (Date.now() > deadline || this.stopped) return msg.nak(1000);
      msg.working();
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 5000);
    }
    msg.ack();
  }

  private async publish(m: Outbound): Promise<void> {
    try {
      await this.js.publish(m.subject, m.data, {
        msgID: m.msgID,
        headers: m.headers,
        expect: m.expectEmpty ? { lastSubjectSequence: 0 } : undefined,
        timeout: 10_000,
      });
    } catch (err) {
      // A result refused because one is stored already: the execution is done, as wanted.
      const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
      if (m.expectEmpty && (code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(String(err)))) return;
      throw err;
    }
  }
}

/** `work`, or a TimeoutError after `seconds`. */
async function withTimeout<T>(work: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`step timed out after ${seconds} s`);
      err.name = "TimeoutError";
      reject(err);
    }, seconds * 1000);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
