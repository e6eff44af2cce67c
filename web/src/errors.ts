/** Why a call failed, read from the google.rpc details the server attaches (never from the
 * message text): the ErrorInfo reason, RetryInfo's delay and BadRequest's fields. */
import { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";

/** The ErrorInfo reason of a failed call ("QUOTA_EXCEEDED", "OVERLOADED", ...), "" if none. */
export function reasonOf(error: unknown): string {
  return error instanceof ConnectError ? (error.findDetails(ErrorInfoSchema)[0]?.reason ?? "") : "";
}

/** Seconds until retrying can succeed, or undefined if the server did not say. */
export function retryAfter(error: unknown): number | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay ? Number(delay.seconds) + delay.nanos / 1e9 : undefined;
}

const ADVICE: Record<string, string> = {
  QUOTA_EXCEEDED: "your budget of queries is spent",
  OVERLOADED: "the service is busy",
  STORE_FULL: "the service's store is full",
  STORE_UNAVAILABLE: "the service's store is down",
  UNAUTHENTICATED: "this service needs a token (paste it above)",
};

function duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** One line for people: what happened, which field was wrong, when to try again. */
export function describe(error: unknown): string {
  if (!(error instanceof ConnectError)) return error instanceof Error ? error.message : String(error);
  const reason = reasonOf(error);
  const parts = [ADVICE[reason] ?? error.rawMessage];
  const fields = error.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
  if (fields.length) parts.push(`field ${fields.join(", ")}`);
  const wait = retryAfter(error);
  if (wait !== undefined) parts.push(`try again in ${duration(wait)}`);
  return `${parts.join("; ")}${reason ? ` (${reason})` : ""}`;
}
