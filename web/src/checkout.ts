// WatchCheckout over gRPC-Web: the generated `CheckoutGateway` descriptor
// (src/gen, from proto/checkout/v1 by `buf generate`) and Connect's gRPC-Web
// transport, which speaks the same wire format tonic-web serves.
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { CheckoutGateway } from "./gen/checkout/v1/gateway_pb.js";
import { CheckoutStatus } from "./gen/checkout/v1/events_pb.js";

export type Status = "pending" | "session_created" | "success" | "failed" | "unknown";

export interface Update {
  status: Status;
  sessionUrl?: string;
  errorMessage?: string;
}

function statusName(s: CheckoutStatus): Status {
  switch (s) {
    case CheckoutStatus.PENDING:
      return "pending";
    case CheckoutStatus.SESSION_CREATED:
      return "session_created";
    case CheckoutStatus.SUCCESS:
      return "success";
    case CheckoutStatus.FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

/// Every status of one checkout, history first, then live; ends after a
/// terminal status (the server closes the stream with OK).
export async function* watchCheckout(
  gatewayUrl: string,
  token: string,
  requestId: string,
): AsyncGenerator<Update> {
  const transport = createGrpcWebTransport({ baseUrl: gatewayUrl });
  const client = createClient(CheckoutGateway, transport);
  const stream = client.watchCheckout(
    { requestId },
    { headers: { authorization: `Bearer ${token}` } },
  );
  for await (const update of stream) {
    const event = update.event;
    if (!event) continue;
    yield {
      status: statusName(event.status),
      sessionUrl: event.sessionUrl,
      errorMessage: event.errorMessage,
    };
  }
}
