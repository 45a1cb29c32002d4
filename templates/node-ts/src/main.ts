#!/usr/bin/env node
/**
 * Serve this package's nodes: `NATS_URL=nats://... NANO_STEPS=workflow.step[,...] node dist/src/main.js`
 * (or the steps as arguments). Ctrl-C / SIGTERM stops pulling, lets in-flight messages
 * settle, then drains the connection.
 */
import { conformanceEcho } from "./conformance_echo.js";
import { serve } from "./host.js";
import { mynode } from "./mynode.js";

const steps = (process.argv.slice(2).join(",") || process.env.NANO_STEPS || "").split(",").filter(Boolean);
if (steps.length === 0) {
  console.error("error: name the steps to serve: NANO_STEPS=workflow.step (or as arguments)");
  process.exit(2);
}
const servers = process.env.NATS_URL || "nats://127.0.0.1:4222";
try {
  const host = await serve({ servers, steps, nodes: [mynode, conformanceEcho] });
  console.log(`ready: serving ${steps.join(", ")} on ${servers}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) process.exit(1);
    stopping = true;
    await host.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  host.nc.closed().then((err) => {
    if (!stopping) {
      console.error(`error: connection to NATS closed${err ? `: ${err.message}` : ""}`);
      process.exit(1);
    }
  });
} catch (err) {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
