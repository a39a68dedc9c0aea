// Package api is the master's public interface over the engine: HTTP JSON
// (submitting, reading, waiting for, canceling and retrying tasks; the
// workers' slots; control actions; stats; health and readiness) and the
// gRPC TaskService of proto/atomicflow/v1/api.proto (Submit, SubmitBatch,
// SubmitStream, Get, Wait, Cancel, Workers, Stats) on a Unix socket by
// default. Both validate the same way and share one engine.
//
// Every error is JSON {"error":{"code":"…","message":"…"}} with the status
// that fits: 400 malformed JSON, unknown kind or bad field; 401 missing or
// wrong token; 404 unknown id; 409 wrong state; 413 body over the limit;
// 429 queue full; 503 shutting down.
package api
