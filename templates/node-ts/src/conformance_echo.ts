/**
 * conformance_echo: the node `nano conformance` drives (docs/protocol.md, "Conformance").
 *
 * Returns `{"echo": input, "attempt": n}`; fails while `attempt < input.fail_until`; waits
 * `input.sleep` seconds first (heartbeats keep the message while it waits).
 */
import type { NodeDef } from "./host.js";

interface EchoInput {
  fail_until?: number;
  sleep?: number;
  [key: string]: unknown;
}

export const conformanceEcho: NodeDef<EchoInput, { echo: EchoInput; attempt: number }, Record<string, unknown>> = {
  name: "conformance_echo",
  async handle(input, _config, ctx) {
    if (input?.sleep) await new Promise((r) => setTimeout(r, Number(input.sleep) * 1000));
    if (input?.fail_until !== undefined && ctx.attempt < input.fail_until) {
      throw new Error(`failing attempt ${ctx.attempt} of ${input.fail_until}`);
    }
    return { echo: input, attempt: ctx.attempt };
  },
};
