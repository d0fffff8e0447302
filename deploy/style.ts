/**
 * Whether output may carry terminal escapes. Colour follows the NO_COLOR convention
 * (https://no-color.org: set and not empty turns colour off); TERM=dumb turns off colour and
 * the cursor movements of the live progress line, which a dumb terminal prints literally.
 */
export interface StreamLike {
  isTTY?: boolean;
}

export function colourEnabled(stream: StreamLike, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.TERM === "dumb") return false;
  return Boolean(stream.isTTY);
}

/** The live progress line rewrites itself with `\r` and `ESC[2K`; only real terminals get it. */
export function cursorControlEnabled(stream: StreamLike, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.TERM === "dumb") return false;
  if (env.CI) return false;
  return Boolean(stream.isTTY);
}

export interface Paint {
  red(text: string): string;
  bold(text: string): string;
}

export function paintFor(stream: StreamLike, env: NodeJS.ProcessEnv = process.env): Paint {
  const on = colourEnabled(stream, env);
  const wrap = (code: string) => (text: string) => (on ? `\x1b[${code}m${text}\x1b[0m` : text);
  return { red: wrap("31"), bold: wrap("1") };
}
