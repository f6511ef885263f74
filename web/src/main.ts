// The balance page's script (served by blazing_sun at /assets/topup.js).
//
// - Token: for the demo, `/#token=<JWT>` (or `?token=<JWT>`) is moved into
//   sessionStorage and removed from the address bar; every call sends it as
//   `authorization: Bearer <JWT>`.
// - Top up: POST /api/v1/balance/checkout, then WatchCheckout over gRPC-Web
//   (see ./checkout.ts) until session_created, then off to the payment page.
// - Back on success_url / cancel_url (`?checkout=success|cancel`): watch the
//   same checkout again until success or failed, then show the new balance.
import { watchCheckout, type Status } from "./checkout.js";

const TOKEN_KEY = "blazing_sun.token";
const PENDING_KEY = "blazing_sun.pending_checkout";
/// How long the page waits for the ledger to show a successful top-up.
const LEDGER_WAIT_MS = 20_000;

/// Amounts are integers in the currency's minor units; the server sends each
/// currency's exponent (2 for eur, 0 for jpy), so there is no table here.
interface Balance {
  currency: string;
  currency_exponent: number | null;
  balance_cents: number;
}
interface LedgerEntry {
  request_id: string;
  amount_cents: number;
  currency: string;
  currency_exponent: number | null;
  recorded_at: string;
}
interface TopupCurrency {
  currency: string;
  currency_exponent: number;
  minimum_cents: number;
}
interface BalanceView {
  user_id: number;
  balances: Balance[];
  recent_ledger: LedgerEntry[];
  topup_currency: TopupCurrency;
}
interface Pending {
  request_id: string;
  amount_cents: number;
  currency: string;
  currency_exponent: number;
}

/// The largest amount (8 digits of minor units, Stripe's limit).
const MAX_MINOR_UNITS = 99_999_999;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

function takeToken(): string | null {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const fromUrl = fragment.get("token") ?? query.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    fragment.delete("token");
    query.delete("token");
    const q = query.toString();
    const f = fragment.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + (f ? `#${f}` : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/// Shows `text` in the live region; `status` drives its colour and the tests.
function show(status: Status | "idle" | "requested" | "cancelled" | "error", text: string): void {
  const el = $("status");
  el.dataset.status = status;
  el.textContent = text;
}

/// `minor` units of `currency` as people read them ("€12.34", "¥1,000");
/// without a known exponent, the minor units as they are.
function money(minor: number, currency: string, exponent: number | null): string {
  const code = currency.toUpperCase();
  if (exponent === null) return `${minor} ${code} (minor units)`;
  return new Intl.NumberFormat("en", {
    style: "currency",
    currency: code,
    minimumFractionDigits: exponent,
    maximumFractionDigits: exponent,
  }).format(minor / 10 ** exponent);
}

/// "12.34", "12,34" or "12" with exponent 2 -> 1234; "1000" with exponent 0
/// -> 1000; null when not a plain amount with at most `exponent` decimals.
export function parseMinor(text: string, exponent: number): number | null {
  const m = /^\s*(\d{1,8})(?:[.,](\d+))?\s*$/.exec(text);
  if (!m) return null;
  const fraction = m[2] ?? "";
  if (fraction.length > exponent) return null;
  const minor = Number(m[1]) * 10 ** exponent + Number(fraction.padEnd(exponent, "0") || "0");
  return minor <= MAX_MINOR_UNITS ? minor : null;
}

async function api<T>(token: string, path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  }
  return body as T;
}

function render(view: BalanceView): void {
  $("who").textContent = `Signed in as user ${view.user_id}.`;
  const topup = view.topup_currency;
  const code = topup.currency.toUpperCase();
  const label = document.querySelector<HTMLLabelElement>('label[for="amount"]');
  if (label) label.textContent = `Amount in ${code}`;
  const input = $<HTMLInputElement>("amount");
  const e = topup.currency_exponent;
  input.pattern = e > 0 ? `[0-9]+([.,][0-9]{1,${e}})?` : "[0-9]+";
  input.placeholder = e > 0 ? `10.${"0".repeat(e)}` : "1000";
  $("amount-hint").textContent =
    `Between ${money(topup.minimum_cents, topup.currency, topup.currency_exponent)} and ` +
    `${money(MAX_MINOR_UNITS, topup.currency, topup.currency_exponent)}; you will pay on the payment page.`;
  const balances = $("balances");
  balances.replaceChildren();
  const none: Balance = { currency: topup.currency, currency_exponent: topup.currency_exponent, balance_cents: 0 };
  const list = view.balances.length > 0 ? view.balances : [none];
  for (const b of list) {
    const li = document.createElement("li");
    li.textContent = money(b.balance_cents, b.currency, b.currency_exponent);
    li.dataset.currency = b.currency;
    li.dataset.cents = String(b.balance_cents);
    balances.append(li);
  }
  const ledger = $("ledger");
  ledger.replaceChildren();
  for (const e of view.recent_ledger) {
    const tr = document.createElement("tr");
    tr.dataset.requestId = e.request_id;
    for (const [text, cls] of [
      [new Date(e.recorded_at).toLocaleString("en-GB"), ""],
      [money(e.amount_cents, e.currency, e.currency_exponent), "amount"],
      [e.request_id.slice(0, 8), ""],
    ]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    ledger.append(tr);
  }
  if (view.recent_ledger.length === 0) {
    ledger.innerHTML = '<tr><td colspan="3">No top-ups yet.</td></tr>';
  }
}

/// The last balance view: the top-up form's currency comes from it.
let lastView: BalanceView | null = null;

async function refresh(token: string): Promise<BalanceView> {
  const view = await api<BalanceView>(token, "/api/v1/balance");
  lastView = view;
  render(view);
  return view;
}

/// The gateway streams `success` as soon as it is on Kafka; the balance
/// service applies it moments later. Poll until the ledger shows it.
async function refreshUntilCredited(token: string, requestId: string): Promise<boolean> {
  const deadline = Date.now() + LEDGER_WAIT_MS;
  for (;;) {
    const view = await refresh(token);
    if (view.recent_ledger.some((e) => e.request_id === requestId)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function topUp(token: string, gatewayUrl: string): Promise<void> {
  const amount = $<HTMLInputElement>("amount");
  let topup: TopupCurrency;
  try {
    topup = (lastView ?? (await refresh(token))).topup_currency;
  } catch (e) {
    show("error", `Cannot load your balance: ${(e as Error).message}`);
    return;
  }
  const exponent = topup.currency_exponent;
  const cents = parseMinor(amount.value, exponent);
  if (cents === null) {
    amount.setAttribute("aria-invalid", "true");
    const example = exponent > 0 ? ` or 12.${"5".padEnd(exponent, "0")}` : "";
    show("error", `Enter an amount in ${topup.currency.toUpperCase()}, like 10${example}.`);
    amount.focus();
    return;
  }
  amount.removeAttribute("aria-invalid");
  const button = $<HTMLButtonElement>("topup");
  button.disabled = true;
  try {
    show("requested", `Requesting a top-up of ${money(cents, topup.currency, exponent)}…`);
    const back = `${location.origin}${location.pathname}`;
    const accepted = await api<{ request_id: string }>(token, "/api/v1/balance/checkout", {
      method: "POST",
      body: JSON.stringify({
        amount_cents: cents,
        currency: topup.currency,
        success_url: `${back}?checkout=success`,
        cancel_url: `${back}?checkout=cancel`,
      }),
    });
    const pending: Pending = {
      request_id: accepted.request_id,
      amount_cents: cents,
      currency: topup.currency,
      currency_exponent: exponent,
    };
    sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    show("pending", "Waiting for the payment page…");
    for await (const update of watchCheckout(gatewayUrl, token, accepted.request_id)) {
      if (update.status === "session_created" && update.sessionUrl) {
        show("session_created", "Opening the payment page…");
        location.assign(update.sessionUrl);
        return;
      }
      if (update.status === "failed") {
        sessionStorage.removeItem(PENDING_KEY);
        show("failed", `failed: ${update.errorMessage || "the checkout could not start"}`);
        return;
      }
    }
  } catch (e) {
    show("error", `Something went wrong: ${(e as Error).message}`);
  } finally {
    button.disabled = false;
  }
}

/// Back from the payment page: follow the checkout to its end.
async function resume(token: string, gatewayUrl: string, outcome: string): Promise<void> {
  const raw = sessionStorage.getItem(PENDING_KEY);
  history.replaceState(null, "", location.pathname);
  if (!raw) return;
  const pending = JSON.parse(raw) as Pending;
  const paid = money(pending.amount_cents, pending.currency, pending.currency_exponent);
  if (outcome === "cancel") {
    // Stripe keeps a cancelled session open until it expires; for the user
    // this top-up has failed, and nothing was charged.
    sessionStorage.removeItem(PENDING_KEY);
    show("failed", `failed: payment cancelled; ${paid} was not charged.`);
    return;
  }
  show("pending", "Payment sent; waiting for confirmation…");
  try {
    for await (const update of watchCheckout(gatewayUrl, token, pending.request_id)) {
      if (update.status === "success") {
        sessionStorage.removeItem(PENDING_KEY);
        show("success", `success: confirming ${paid}…`);
        const credited = await refreshUntilCredited(token, pending.request_id);
        show(
          "success",
          credited
            ? `success: ${paid} added to your balance.`
            : "success: paid; your balance will update shortly.",
        );
        return;
      }
      if (update.status === "failed") {
        sessionStorage.removeItem(PENDING_KEY);
        show("failed", `failed: ${update.errorMessage || "the payment did not go through"}`);
        return;
      }
      if (update.status === "session_created") {
        show("session_created", "Payment sent; waiting for confirmation…");
      }
    }
    show("error", "The status stream ended before the payment was confirmed; reload to retry.");
  } catch (e) {
    show("error", `Something went wrong: ${(e as Error).message}`);
  }
}

async function main(): Promise<void> {
  const gatewayUrl = document.querySelector<HTMLMetaElement>('meta[name="gateway-url"]')?.content ?? "";
  const token = takeToken();
  if (!token) {
    show("error", "No token: open this page as /#token=<your JWT>.");
    $<HTMLButtonElement>("topup").disabled = true;
    return;
  }
  const outcome = new URLSearchParams(location.search).get("checkout");
  $("topup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void topUp(token, gatewayUrl);
  });
  try {
    await refresh(token);
  } catch (e) {
    show("error", `Cannot load your balance: ${(e as Error).message}`);
    return;
  }
  if (outcome) await resume(token, gatewayUrl, outcome);
}

void main();
