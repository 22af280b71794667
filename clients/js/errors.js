// The one error class of the roomsvc client: the server's JSON-RPC errors and the client's own
// reasons (disconnected, timeout, closed, ...) alike (docs/clients.md, "Errors").

/** An error from roomsvc or from this client. `data` is the JSON-RPC error's `data`. */
export class RoomsvcError extends Error {
  constructor(message, { rpcCode = null, data = null, reason = null } = {}) {
    super(message);
    this.name = "RoomsvcError";
    this.rpcCode = rpcCode; // the JSON-RPC code (-32xxx), null for the client's own errors
    this.data = data ?? { reason };
    this.code = this.data.code ?? null; // the HTTP-like code (404, 409, 503...)
    this.status = this.data.status ?? null; // NOT_FOUND, FAILED_PRECONDITION...
    this.reason = this.data.reason ?? reason; // Google's reason, or the client's own
    this.gpgsStatus = this.data.gpgsStatus ?? null; // 7003, 7004, 7005 where GPGS had one
  }
}

/** One of the client's own errors: no JSON-RPC code, `reason` names what went wrong. */
export function clientError(reason, message) {
  return new RoomsvcError(message, { reason });
}
