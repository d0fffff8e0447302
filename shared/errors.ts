/**
 * zcp's error hierarchy. Every failure a user can meet is one of these; the CLI's `main`
 * maps them to exit codes in exactly one place (`exitCodeFor`).
 */

/** Exit codes fixed by the CLI contract. */
export const ExitCode = {
  Ok: 0,
  /** The release failed; every switched instance was rolled back. */
  ReleaseFailed: 1,
  /** Bad input or configuration; nothing was changed. */
  BadInput: 2,
  /** Another release holds the environment's lock. */
  Locked: 3,
  /**
   * Something zcp did not anticipate (a defect, or a broken installation): not a release
   * that failed and rolled back, so automation must not treat it as one. 70 is sysexits'
   * EX_SOFTWARE, "an internal software error".
   */
  Internal: 70,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export abstract class ZcpError extends Error {
  abstract readonly exitCode: ExitCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration or input, detected before anything changed. */
export class ConfigError extends ZcpError {
  readonly exitCode = ExitCode.BadInput;
  /** The offending field, as `zcp:deploy.batch` or `--version`. */
  readonly field: string;
  constructor(field: string, problem: string, options?: { cause?: unknown }) {
    super(`${field}: ${problem}`, options);
    this.field = field;
  }
}

/** The caller's AWS account is not the environment's configured account. */
export class WrongAccountError extends ZcpError {
  readonly exitCode = ExitCode.BadInput;
  constructor(
    readonly environment: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `environment "${environment}" is configured for AWS account ${expected}, ` +
        `but the current credentials belong to ${actual}; nothing was changed`,
    );
  }
}

/** A release ran and failed; instances it switched were rolled back. */
export class ReleaseFailedError extends ZcpError {
  readonly exitCode = ExitCode.ReleaseFailed;
}

/** Another release of the same environment is in progress. */
export class ReleaseLockedError extends ZcpError {
  readonly exitCode = ExitCode.Locked;
  constructor(
    readonly environment: string,
    readonly holder: string,
    options?: { cause?: unknown },
  ) {
    super(`another release of "${environment}" is in progress (lock held by ${holder})`, options);
  }
}

/** A compare-and-swap on `latest.json` lost: someone else moved the pointer. */
export class PointerRaceError extends ZcpError {
  readonly exitCode = ExitCode.ReleaseFailed;
}

/** A deadline passed while waiting on AWS (an image, a command). */
export class DeadlineExceededError extends ZcpError {
  readonly exitCode = ExitCode.ReleaseFailed;
}

/**
 * Wraps an SDK or process error with the step and target that failed, so a user reads
 * `SSM deploy to i-0abc failed: AccessDenied …` instead of a bare SDK message.
 */
export class StepError extends ZcpError {
  readonly exitCode = ExitCode.ReleaseFailed;
  constructor(
    readonly step: string,
    readonly target: string,
    cause: unknown,
  ) {
    super(`${step} ${target ? `${target} ` : ""}failed: ${describeError(cause)}`, { cause });
  }
}

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const name = err.name && err.name !== "Error" ? `${err.name}: ` : "";
    return `${name}${err.message}`;
  }
  return String(err);
}

/**
 * The single mapping from an error to the process exit code. An error that is not one of
 * zcp's was not anticipated anywhere, so it cannot claim "failed and rolled back".
 */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof ZcpError) return err.exitCode;
  return ExitCode.Internal;
}
