import assert from "node:assert/strict";
import { test } from "node:test";

import { mynode } from "../src/mynode.js";
import { forwardEnvelope, msgId, parseTable, retryDelay, type StepRoute } from "../src/protocol.js";

const step = (keep: string[] | null, keep_input = false): StepRoute => ({
  name: "count",
  node: "mynode",
  config: {},
  subject: "nano.w.count",
  consumer: "count",
  next: ["record"],
  retry: { max_attempts: 3, backoff: [0.5, 2], retry_on: null },
  timeout: 30,
  ack_wait: 30,
  concurrency: 8,
  keep,
  keep_input,
  runtime: "node",
});

test("mynode counts words and finds the most frequent one", () => {
  assert.deepEqual(mynode.handle({ text: "The cat saw the dog" }, { lower: true }, ctx()), { words: 5, top: "the" });
  assert.throws(() => mynode.handle({} as never, {}, ctx()), /string `text`/);
});

test("the envelope carries only what later steps read, as the Python hosts send it", () => {
  const env = { input: { a: 1 }, prev: 1, steps: { old: { output: 1 }, gone: { output: 2 } }, vars: { v: 1 } };
  assert.deepEqual(forwardEnvelope(step(["old", "count"]), env, { n: 2 }), {
    prev: { n: 2 },
    steps: { old: { output: 1 }, count: { output: { n: 2 } } },
    vars: { v: 1 },
  });
  assert.deepEqual(forwardEnvelope(step([], true), env, 3), { input: { a: 1 }, prev: 3, vars: { v: 1 } });
  assert.deepEqual(Object.keys(forwardEnvelope(step(null), env, 3).steps ?? {}), ["old", "gone", "count"]);
});

test("backoff repeats its last value and message ids name loop iterations", () => {
  const retry = step(null).retry;
  assert.deepEqual([1, 2, 3, 9].map((n) => retryDelay(retry, n)), [0.5, 2, 2, 2]);
  assert.equal(msgId("e1", "a", "b"), "e1:a:b");
  assert.equal(msgId("e1", "a", "b", { scan: 1, retry: 2 }), "e1:a:b:retry2-scan1");
});

test("a table of an unknown format is refused", () => {
  assert.throws(() => parseTable('{"format": 2}'), /format 2 is not 1/);
});

function ctx() {
  return { execution: "e1", workflow: "w", step: "count", attempt: 1 };
}
