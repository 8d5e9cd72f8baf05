// TradeGuard console: progressive enhancement for the server-rendered pages (no inline script: CSP
// script-src 'self'). Signing goes through an EIP-1193 provider (eth_signTypedData_v4): the user's browser
// wallet, or on dev chains the built-in dev wallet. Hashes are computed here, in the browser, so that what is
// signed and what is checked does not depend on trusting the server.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const ZERO32 = "0x" + "00".repeat(32);
const DAY = 86400;

function notice(text, isError = false) {
  const el = document.querySelector('[data-testid="notice"]');
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// --- wallet ----------------------------------------------------------------------------------------------

/** The EIP-1193 provider: the page's injected wallet, else on dev chains the console's dev wallet. */
function provider() {
  if (window.ethereum) return window.ethereum;
  if (document.body.dataset.dev === "true") return devWallet;
  throw new Error("no wallet: install an EIP-1193 browser wallet");
}

/** Dev chains only: the service signs for its demo accounts with the dev chain's own eth_signTypedData_v4. */
const devWallet = {
  async request({ method, params }) {
    if (method === "eth_requestAccounts" || method === "eth_accounts") {
      return [document.body.dataset.address];
    }
    if (method === "eth_signTypedData_v4") {
      const answer = await postJSON("/console/dev/wallet/sign", { address: params[0], typed_data: params[1] });
      return answer.signature;
    }
    if (method === "eth_sendTransaction") {
      // the dev node's own eth_sendTransaction from the signed-in principal's (unlocked) demo account
      const answer = await postJSON("/console/dev/wallet/send", { transaction: params[0] });
      return answer.tx_hash;
    }
    throw new Error(`dev wallet: ${method} is not supported`);
  },
};

async function account() {
  const accounts = await provider().request({ method: "eth_requestAccounts" });
  if (!accounts || !accounts.length) throw new Error("the wallet gave no account");
  return accounts[0];
}

async function signTyped(address, doc) {
  return provider().request({ method: "eth_signTypedData_v4", params: [address, JSON.stringify(doc)] });
}

function sameAddress(a, b) {
  return String(a).toLowerCase() === String(b).toLowerCase();
}

// --- HTTP --------------------------------------------------------------------------------------------------

async function answer(resp) {
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const detail = typeof body === "object" ? body.detail || body.title : body;
    throw new Error(`${resp.status}: ${detail}`);
  }
  return body;
}

async function getJSON(url) {
  return answer(await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

async function postJSON(url, body) {
  return answer(
    await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }),
  );
}

async function postForm(url, form) {
  return answer(
    await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
      body: form,
    }),
  );
}

// --- hashing -------------------------------------------------------------------------------------------------

function hex(buffer) {
  return "0x" + Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(data) {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

async function fileHash(input) {
  const file = input.files && input.files[0];
  if (!file) throw new Error("choose a file first");
  const digest = await sha256(await file.arrayBuffer());
  const out = document.querySelector(`output[data-hash-of="${input.id}"]`);
  if (out) out.textContent = digest;
  return { file, digest };
}

// --- money (SPEC §3, exact: BigInt) ------------------------------------------------------------------------------

function units(value, decimals) {
  const v = BigInt(value);
  const base = 10n ** BigInt(decimals);
  const frac = (v % base).toString().padStart(decimals, "0");
  return `${(v / base).toLocaleString("en-US")}.${frac}`;
}

function splitOf(amount, commissionBps, taxBps, buyerShareBps) {
  const refund = (amount * buyerShareBps) / 10000n;
  const gross = amount - refund;
  const commission = (gross * commissionBps) / 10000n;
  const tax = (gross * taxBps) / 10000n;
  return { buyer_refund: refund, commission, tax, seller_net: gross - commission - tax };
}

// --- order page ---------------------------------------------------------------------------------------------

const order = document.getElementById("order");

async function typed(primary, message) {
  const chain = await getJSON("/console/chain");
  return {
    doc: {
      types: { EIP712Domain: chain.types.EIP712Domain, [primary]: chain.types[primary] },
      primaryType: primary,
      domain: chain.domain,
      message,
    },
    chainTime: chain.chain_time,
  };
}

async function validUntil() {
  const chain = await getJSON("/console/chain");
  return Number(chain.chain_time) + DAY;
}

/** Whether the user is in the middle of something on this page (a file chosen, a form filled, an action
 * running): a change to the order then must not redraw the page under them. */
let busy = false;
let changedMeanwhile = false;

async function run(button, label, work) {
  busy = true;
  if (button) button.disabled = true;
  notice(`${label}: waiting for the wallet…`);
  try {
    const result = await work();
    notice(`${label}: accepted${result && result.intent ? ` (${result.intent.status})` : ""}`);
    window.location.reload();
  } catch (err) {
    notice(`${label} failed: ${err.message || err}`, true);
    if (button) button.disabled = false;
  }
}

async function fund(button) {
  await run(button, "Funding", async () => {
    const me = await account();
    if (!sameAddress(me, order.dataset.buyer)) throw new Error(`the wallet account ${me} is not this order's buyer`);
    const docs = await getJSON(`/console/orders/${order.dataset.orderId}/signing`);
    const signature = await signTyped(me, docs.authorization);
    const permitSignature = await signTyped(me, docs.permit);
    return postJSON(`/console/orders/${order.dataset.orderId}/funding`, {
      signature,
      permit: { deadline: Number(docs.permit.message.deadline), signature: permitSignature },
    });
  });
}

async function decide(kind, evidenceHash) {
  const me = await account();
  if (!sameAddress(me, order.dataset.buyer)) throw new Error(`the wallet account ${me} is not this order's buyer`);
  const until = await validUntil();
  const { doc } = await typed("BuyerDecision", {
    orderId: order.dataset.orderId,
    decision: kind === "confirm-receipt" ? 1 : 2,
    evidenceHash,
    validUntil: until,
  });
  const signature = await signTyped(me, doc);
  return postJSON(`/console/orders/${order.dataset.orderId}/decision/${kind}`, {
    signature,
    valid_until: until,
    evidence_hash: evidenceHash,
  });
}

async function submitEvidence(file, digest) {
  const me = await account();
  const until = await validUntil();
  const { doc } = await typed("EvidenceSubmission", {
    orderId: order.dataset.orderId,
    party: me,
    evidenceHash: digest,
    validUntil: until,
  });
  const signature = await signTyped(me, doc);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("signature", signature);
  form.append("valid_until", String(until));
  return postForm(`/console/orders/${order.dataset.orderId}/evidence`, form);
}

function rulingPreview(form) {
  const slider = form.querySelector("#share");
  const number = form.querySelector("#share-bps");
  const show = (bps) => {
    const decimals = Number(order.dataset.decimals);
    const split = splitOf(
      BigInt(order.dataset.amount),
      BigInt(order.dataset.commissionBps),
      BigInt(order.dataset.taxBps),
      BigInt(bps),
    );
    for (const [key, value] of Object.entries(split)) {
      const cell = form.querySelector(`[data-preview="${key}"]`);
      cell.textContent = `${units(value, decimals)} ${order.dataset.currency}`;
      cell.dataset.units = value.toString();
    }
    form.querySelector("#share-out").textContent = `${(Number(bps) / 100).toFixed(2)} %`;
  };
  slider.addEventListener("input", () => {
    number.value = slider.value;
    show(slider.value);
  });
  number.addEventListener("input", () => {
    const bps = Math.max(0, Math.min(10000, Math.trunc(Number(number.value) || 0)));
    slider.value = String(bps);
    show(bps);
  });
  show(slider.value);
}

async function rule(form) {
  const button = form.querySelector("button[type=submit]");
  await run(button, "Ruling", async () => {
    const me = await account();
    const bps = Number(form.querySelector("#share-bps").value);
    const rationale = form.querySelector("#rationale").value;
    const rationaleHash = await sha256(new TextEncoder().encode(rationale));
    const until = await validUntil();
    const { doc } = await typed("Ruling", {
      orderId: order.dataset.orderId,
      buyerShareBps: bps,
      rationaleHash,
      validUntil: until,
    });
    const signature = await signTyped(me, doc);
    return postJSON(`/console/orders/${order.dataset.orderId}/ruling`, {
      buyer_share_bps: bps,
      rationale_hash: rationaleHash,
      valid_until: until,
      signature,
    });
  });
}

/** Re-hash each anchored evidence file here and compare it with the hash anchored on chain. */
async function verifyEvidence() {
  for (const row of document.querySelectorAll("tr[data-evidence]")) {
    const anchored = row.dataset.sha256;
    const cell = row.querySelector("[data-verdict]");
    if (!anchored) continue;
    try {
      const resp = await fetch(row.dataset.url, { credentials: "same-origin" });
      if (!resp.ok) throw new Error(String(resp.status));
      const digest = await sha256(await resp.arrayBuffer());
      const ok = digest.toLowerCase() === anchored.toLowerCase();
      cell.textContent = ok ? "✔ matches the chain" : `✘ does not match (file hashes to ${digest.slice(0, 18)}…)`;
      cell.classList.add(ok ? "ok" : "bad");
      row.dataset.verified = ok ? "match" : "mismatch";
    } catch (err) {
      cell.textContent = `could not check: ${err.message || err}`;
      row.dataset.verified = "error";
    }
  }
}

function wireOrderPage() {
  if (!order) return;
  for (const section of document.querySelectorAll("section.actions")) {
    section.addEventListener("input", () => (busy = true));
    section.addEventListener("change", () => (busy = true));
  }
  document.body.addEventListener("order-changed", () => {
    if (!busy) {
      window.location.reload();
    } else if (!changedMeanwhile) {
      changedMeanwhile = true;
      notice("This order changed since the page loaded: reload to see it (your form is kept until you do).");
    }
  });
  document.querySelector('[data-action="fund"]')?.addEventListener("click", (e) => fund(e.currentTarget));
  document.querySelector('[data-action="confirm-receipt"]')?.addEventListener("click", (e) =>
    run(e.currentTarget, "Confirm receipt", () => decide("confirm-receipt", ZERO32)),
  );
  for (const input of document.querySelectorAll('input[type="file"][id]')) {
    input.addEventListener("change", () => fileHash(input).catch((err) => notice(String(err), true)));
  }
  const dispute = document.querySelector('form[data-action="dispute"]');
  dispute?.addEventListener("submit", (e) => {
    e.preventDefault();
    run(dispute.querySelector("button"), "Dispute", async () => {
      const { file, digest } = await fileHash(dispute.querySelector('input[type="file"]'));
      const opened = await decide("dispute", digest);
      await submitEvidence(file, digest);
      return opened;
    });
  });
  const evidence = document.querySelector('form[data-action="evidence"]');
  evidence?.addEventListener("submit", (e) => {
    e.preventDefault();
    run(evidence.querySelector("button"), "Evidence", async () => {
      const { file, digest } = await fileHash(evidence.querySelector('input[type="file"]'));
      return submitEvidence(file, digest);
    });
  });
  const ruling = document.querySelector('form[data-action="ruling"]');
  if (ruling) {
    rulingPreview(ruling);
    ruling.addEventListener("submit", (e) => {
      e.preventDefault();
      rule(ruling);
    });
  }
  verifyEvidence().then(() => document.body.setAttribute("data-evidence-checked", "true"));
}

// --- the party's own wallet: transactions the API answers (refund, withdrawal, freeze) -----------------------------

/** Send the API's transaction (to, data, value, chainId, gas) unchanged from the wallet; its hash. */
async function sendTransaction(answer) {
  const tx = answer.transaction;
  const me = await account();
  if (!sameAddress(me, tx.from)) throw new Error(`this needs the wallet account ${tx.from}, not ${me}`);
  return provider().request({
    method: "eth_sendTransaction",
    params: [
      {
        from: tx.from,
        to: tx.to,
        data: tx.data,
        value: tx.value,
        gas: tx.gas,
        chainId: "0x" + Number(tx.chainId).toString(16),
      },
    ],
  });
}

const POLL_MS = 1000;
const POLL_TRIES = 120;

/** Wait until the service's index has the transaction (or it reverted); the page then shows its effect. */
async function untilIndexed(hash, label) {
  for (let i = 0; i < POLL_TRIES; i++) {
    const state = await getJSON(`/console/transactions/${hash}`);
    if (state.status === "indexed") return state;
    if (state.status === "reverted") throw new Error(`transaction ${hash} reverted on chain`);
    notice(`${label}: transaction ${hash} is ${state.status}; waiting for the index…`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`transaction ${hash} is not indexed yet: reload the page later`);
}

/** Fetch the transaction from the API, send it from the wallet, wait for the index, show the page again. */
async function walletAction(button, label, url) {
  await run(button, label, async () => {
    const answer = await getJSON(url);
    notice(`${label}: ${answer.description}; confirm in your wallet…`);
    const hash = await sendTransaction(answer);
    const state = await untilIndexed(hash, label);
    const events = state.events.map((e) => e.name).join(", ");
    sessionStorage.setItem(
      "tg-notice",
      `${label}: done, transaction ${hash} indexed in block ${state.block_number} (${events || "no events"})`,
    );
    return null;
  });
}

function wireWalletActions() {
  if (order) {
    const base = `/console/orders/${order.dataset.orderId}`;
    document.querySelector('[data-action="refund"]')?.addEventListener("click", (e) =>
      walletAction(e.currentTarget, "Refund", `${base}/refund-transaction`),
    );
    document.querySelector('[data-action="unfreeze"]')?.addEventListener("click", (e) =>
      walletAction(e.currentTarget, "Unfreeze", `${base}/unfreeze-transaction`),
    );
    const freeze = document.querySelector('form[data-action="freeze"]');
    freeze?.addEventListener("submit", (e) => {
      e.preventDefault();
      const days = Math.trunc(Number(freeze.querySelector("#freeze-days").value));
      const query = new URLSearchParams({
        seconds: String(days * DAY),
        reason: freeze.querySelector("#freeze-reason").value,
      });
      walletAction(freeze.querySelector("button"), "Freeze", `${base}/freeze-transaction?${query}`);
    });
  }
  for (const button of document.querySelectorAll('button[data-action="withdraw"]')) {
    const currency = button.dataset.currency;
    button.addEventListener("click", () =>
      walletAction(button, `Withdrawal (${currency})`, `/console/credits/withdrawal?${new URLSearchParams({ currency })}`),
    );
  }
  const saved = sessionStorage.getItem("tg-notice");
  if (saved) {
    sessionStorage.removeItem("tg-notice");
    notice(saved);
  }
}

// --- dashboard --------------------------------------------------------------------------------------------------

function drawCalendars() {
  for (const canvas of document.querySelectorAll("canvas[data-calendar]")) {
    const data = JSON.parse(canvas.dataset.calendar);
    const scale = 10 ** data.decimals;
    const labels = data.labels.map((t) => new Date(t * 1000).toISOString().slice(5, 10));
    if (!window.Chart) continue;
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: [{ label: "due (seller net)", data: data.units.map((u) => Number(u) / scale), backgroundColor: "#1f6feb" }],
      },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
    });
  }
}

wireOrderPage();
wireWalletActions();
drawCalendars();
document.body.setAttribute("data-ready", "true");
