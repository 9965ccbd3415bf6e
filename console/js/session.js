// The signed-in credential lives in sessionStorage only: gone when the tab closes, never in a URL or
// in localStorage, and removed on sign-out.
const KEY = "securegate.credential";

/** @returns {{kind: "admin"|"tenant", token: string} | null} */
export function credential() {
  try {
    const value = JSON.parse(sessionStorage.getItem(KEY));
    return value && typeof value.token === "string" ? value : null;
  } catch {
    return null;
  }
}

export function remember(kind, token) {
  sessionStorage.setItem(KEY, JSON.stringify({ kind, token }));
}

export function forget() {
  sessionStorage.removeItem(KEY);
}
