/** Why a call failed, for people: a sentence saying what happened and what to do, read from
 * the status code and the google.rpc details the server attaches (never from message text):
 * the ErrorInfo reason, RetryInfo's delay and BadRequest's fields. */
import { Code, ConnectError } from "@connectrpc/connect";
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

/** What the page tells the user about a failure. */
export interface Explained {
  /** One or two sentences: what happened and what the user does about it (when the page
   * retries by itself, the page adds when). */
  readonly sentence: string;
  /** The control that fixes it: "token" (enter one), "retry" (the page retries by itself
   * after `retryIn` seconds) or "none" (the user decides). */
  readonly fix: "token" | "retry" | "none";
  readonly retryIn?: number;
  /** The raw status for "details": code, reason and the server's message. */
  readonly raw: string;
}

export function duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// A fetch that never reached a server: connect-web reports it as UNKNOWN "Failed to fetch"
// (Chromium) or "NetworkError ..." (Firefox), with no status from any server.
function unreachable(error: ConnectError): boolean {
  return error.code === Code.Unknown && /failed to fetch|networkerror|load failed/i.test(error.rawMessage);
}

/** The sentence for `error`; `hasToken`: whether the page sent a token. */
export function explain(error: unknown, hasToken: boolean): Explained {
  if (!(error instanceof ConnectError)) {
    const text = error instanceof Error ? error.message : String(error);
    return { sentence: `Something went wrong in this page: ${text}. Reload the page to start again.`, fix: "none", raw: text };
  }
  const reason = reasonOf(error);
  const wait = retryAfter(error);
  const fields = error.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
  const raw = `[${Code[error.code]}${reason ? ` ${reason}` : ""}] ${error.rawMessage}${fields.length ? ` (field ${fields.join(", ")})` : ""}`;
  const retry = (sentence: string, seconds: number): Explained => ({ sentence, fix: "retry", retryIn: seconds, raw });
  if (unreachable(error)) {
    return retry("The server cannot be reached: it may be down or restarting, or this computer is offline.", 5);
  }
  switch (error.code) {
    case Code.Unauthenticated:
      return {
        sentence: hasToken
          ? "The server refused your access token (it may have expired or been replaced). Paste a current one under “Access token”; the page tries again as soon as you do."
          : "This service needs an access token. Paste the token the operator gave you under “Access token”; the page tries again as soon as you do.",
        fix: "token",
        raw,
      };
    case Code.PermissionDenied:
      return { sentence: "Your access token does not allow this. Ask the operator, or paste another token under “Access token”.", fix: "token", raw };
    case Code.ResourceExhausted:
      if (reason === "QUOTA_EXCEEDED") {
        return {
          sentence: `Your budget of queries for the day is spent.${wait !== undefined ? ` You can ask again in ${duration(wait)}.` : ""}`,
          fix: "none",
          raw,
        };
      }
      if (reason === "STORE_FULL") return { sentence: "The service's store is full; its operator is alerted. Try again later.", fix: "none", raw };
      if (reason === "TOO_LARGE") return { sentence: "The request is larger than the service accepts. Rate fewer movies and try again.", fix: "none", raw };
      return retry("The service is busy.", wait ?? 2);
    case Code.Unavailable:
      if (reason === "STORE_UNAVAILABLE") return retry("The service is up but its store is down; its operator is alerted.", wait ?? 5);
      return retry("The service is unavailable (starting, restarting or shutting down).", wait ?? 5);
    case Code.NotFound:
      if (reason === "MODEL_NOT_FOUND") return retry("The service has no model to serve yet (its operator trains one).", wait ?? 30);
      return { sentence: "The service no longer knows something this page used. Press “Recommend” again.", fix: "none", raw };
    case Code.DeadlineExceeded:
      return { sentence: "The request took too long (a slow connection or a busy server). Press “Recommend” to try again.", fix: "none", raw };
    case Code.Canceled:
      return { sentence: "The request was cancelled. Press “Recommend” to try again.", fix: "none", raw };
    default:
      return { sentence: "Something went wrong on the server. Try again; if it keeps failing, tell its operator what “details” says.", fix: "none", raw };
  }
}
