/**
 * mynode: counts the words of a text (the same node as the Python template's, so the two
 * can be compared on one step).
 *
 * Config: `lower` (boolean, default false). Input: `{"text": string}`.
 * Output: `{"words": number, "top": string | null}`.
 */
import { NonRetryableError } from "./protocol.js";
import type { NodeDef } from "./host.js";

export interface MynodeConfig {
  lower?: boolean;
}
export interface MynodeInput {
  text: string;
}
export interface MynodeOutput {
  words: number;
  top: string | null;
}

export const mynode: NodeDef<MynodeInput, MynodeOutput, MynodeConfig> = {
  name: "mynode",
  handle(input, config) {
    if (typeof input?.text !== "string") throw new NonRetryableError("input needs a string `text`");
    let words = input.text.split(/\s+/).filter(Boolean);
    if (config.lower) words = words.map((w) => w.toLowerCase());
    const counts = new Map<string, number>();
    let top: string | null = null;
    for (const w of words) {
      const n = (counts.get(w) ?? 0) + 1;
      counts.set(w, n);
      if (top === null || n > (counts.get(top) ?? 0)) top = w;
    }
    return { words: words.length, top };
  },
};
