import { expect } from "chai";
import { ConfigError } from "../../../shared/errors.js";

/** Runs `fn`, expecting it to throw a ConfigError, and returns that error. */
export function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  return expect.fail("expected a ConfigError");
}
