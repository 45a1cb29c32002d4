// A plain NATS client in another language: publishes to a foreign trigger subject and sends
// a request to nano._request.<workflow>. Prints one JSON line per reply.
// usage: node request.mjs <nats url> <workflow> <publish subject> <json payload>
import { connect, headers } from "@nats-io/transport-node";

const [url, workflow, subject, payload] = process.argv.slice(2);
const nc = await connect({ servers: url });
nc.publish(subject, payload);
await nc.flush();
const h = headers();
h.set("Nano-Execution", "node-1");
const reply = await nc.request(`nano._request.${workflow}`, payload, { timeout: 20000, headers: h });
console.log(JSON.stringify({
  status: reply.headers?.get("Nano-Status"),
  execution: reply.headers?.get("Nano-Execution"),
  body: JSON.parse(reply.string()),
}));
await nc.close();
