// Package api is the master's HTTP JSON interface: submitting, reading,
// waiting for, canceling and retrying tasks; the workers' slots; control
// actions (kill, restart); stats; health and readiness.
//
// Every error is JSON {"error":{"code":"…","message":"…"}} with the status
// that fits: 400 malformed JSON, unknown kind or bad field; 401 missing or
// wrong token; 404 unknown id; 409 wrong state; 413 body over the limit;
// 429 queue full; 503 shutting down.
package api
