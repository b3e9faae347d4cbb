// The one API client: bearer token, one refresh on 401, the error envelope as ApiError,
// Idempotency-Key on calls that move money or shares, and file downloads.

const TOKEN = "wa_token";
const REFRESH = "wa_refresh";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details ?? null;
  }
}

let signedOutListener = () => {};
let tokenListener = () => {};
let refreshing = null;

export function onSignedOut(listener) { signedOutListener = listener; }
/** Called with each new access token (a sign-in or a refresh), so the live stream can re-authenticate. */
export function onToken(listener) { tokenListener = listener; }
export function signedIn() { return Boolean(sessionStorage.getItem(TOKEN)); }
export function accessToken() { return sessionStorage.getItem(TOKEN); }

function remember(tokens) {
  sessionStorage.setItem(TOKEN, tokens.access_token);
  sessionStorage.setItem(REFRESH, tokens.refresh_token);
  tokenListener(tokens.access_token);
}

function forget() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(REFRESH);
}

export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  const error = body && body.error;
  if (error) return new ApiError(response.status, error.code, error.message, error.details);
  return new ApiError(response.status, "HTTP_" + response.status,
    `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".");
}

// One refresh at a time: concurrent 401s (and the live stream's 4401) wait for the same new pair.
export async function refresh() {
  const token = sessionStorage.getItem(REFRESH);
  if (!token) return false;
  if (!refreshing) {
    refreshing = fetch("/api/v1/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    }).then(async (response) => {
      if (!response.ok) return false;
      remember((await response.json()).data);
      return true;
    }).catch(() => false).finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function send(path, { method = "GET", body, headers = {}, signal }) {
  const all = { Accept: "application/json", ...headers };
  const token = sessionStorage.getItem(TOKEN);
  if (token) all.Authorization = "Bearer " + token;
  if (body !== undefined) all["Content-Type"] = "application/json";
  return fetch(path, { method, headers: all, signal, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** The session is over (the refresh token was refused): forget it and go to sign-in. */
export function endSession() {
  forget();
  signedOutListener();
}

async function authorized(path, options) {
  let response = await send(path, options);
  if (response.status === 401 && sessionStorage.getItem(REFRESH) && !options.anonymous) {
    if (await refresh()) response = await send(path, options);
    else endSession();
  }
  return response;
}

/** The envelope's data, or an ApiError. `idempotent: true` sends a fresh Idempotency-Key
 *  (or pass `key` to reuse one, so a retried click cannot move money twice). */
export async function api(path, options = {}) {
  const body = await envelope(path, options);
  return body === null ? null : body.data;
}

/** A list's page: `{ data, links }`, where `links.next` (when there is one) asks for the next page. */
export async function apiPage(path, options = {}) {
  const body = await envelope(path, options);
  return { data: body.data, links: body.links || {} };
}

async function envelope(path, options) {
  const headers = { ...(options.headers || {}) };
  if (options.key || options.idempotent) headers["Idempotency-Key"] = options.key || newKey();
  let response;
  try {
    response = await authorized(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "NETWORK_ERROR", "The server cannot be reached. Check the connection and try again.");
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export async function signIn(email, password, totp) {
  const body = { email, password };
  if (totp) body.totp_code = totp;
  forget();
  const tokens = await api("/api/v1/auth/login", { method: "POST", body, anonymous: true });
  remember(tokens);
}

export async function signOut() {
  const token = sessionStorage.getItem(REFRESH);
  forget();
  if (token) {
    await fetch("/api/v1/auth/logout", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: token }),
    }).catch(() => null);
  }
}

/** A file (CSV, PDF) fetched with the token and saved under the server's file name. */
export async function download(path) {
  const response = await authorized(path, { headers: {} });
  if (!response.ok) throw await errorOf(response);
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = named ? named[1] : "download";
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  return link.download;
}
