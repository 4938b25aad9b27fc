// Whether this browser can take part in an end-to-end encrypted meeting:
// frames encrypted in a worker (RTCRtpScriptTransform, in Chromium and
// Firefox) and WebCrypto. Asked before joining (the join page says so in
// words) and in the join message (the server refuses a client without it).
export function e2eeCapable() {
  return typeof RTCRtpScriptTransform === 'function' && !!globalThis.crypto?.subtle && typeof Worker === 'function';
}
