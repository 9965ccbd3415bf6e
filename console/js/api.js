// One way to call the SecureGate API: JSON in and out, the bearer credential from the session, and every
// refusal turned into an ApiError carrying the API's own code and message.
import { credential } from "./session.js";

// The console is served at <prefix>/console/; the API lives at <prefix>/v1/.
const BASE = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), BASE);
}

function headersFor(token, json) {
  const headers = { Accept: "application/json" };
  const bearer = token ?? credential()?.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (json) headers["Content-Type"] = "application/json";
  return headers;
}

export async function errorFrom(response) {
  const text = await response.text();
  try {
    const { code, message, ...details } = JSON.parse(text).error;
    return new ApiError(response.status, code, message, details);
  } catch {
    // Not our JSON shape (a proxy in front, a restarting replica): show what came, as it came.
    return new ApiError(response.status, `http_${response.status}`, text.trim() || response.statusText);
  }
}

/** fetch() with the session's bearer; resolves to the parsed JSON (null for 204), rejects with ApiError. */
export async function call(method, path, { body, token, signal } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      headers: headersFor(token, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `the server could not be reached (${err.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, options) => call("GET", path, options);
export const post = (path, body, options) => call("POST", path, { ...options, body });
export const patch = (path, body, options) => call("PATCH", path, { ...options, body });
export const del = (path, options) => call("DELETE", path, options);

/**
 * Server-Sent Events over fetch (EventSource cannot send an Authorization header). Calls onEvent with
 * {event, data, id} for each message until the server ends the stream or `signal` aborts; rejects with
 * ApiError when the server refuses. `lastEventId` is sent as Last-Event-ID: a reconnecting reader gets
 * every event after it, none twice. `onOpen` is called once the server has accepted the stream.
 */
export async function streamEvents(path, onEvent, signal, lastEventId = null, onOpen = () => {}) {
  const headers = { ...headersFor(undefined, false), Accept: "text/event-stream" };
  if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
  const response = await fetch(apiUrl(path), { headers, signal, cache: "no-store" });
  if (!response.ok) throw await errorFrom(response);
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent({ event, data: data.join("\n"), id });
    }
  }
}

/** The file's bytes as base64, the way the API takes images. */
export function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] ?? "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
