// Package dashboard turns the shared region into a live view and streams it
// to browsers.
//
// Three parts, each usable on its own:
//
//   - EventLog keeps the last lifecycle events of the worker slots (started,
//     ready, exited, restarting, backoff, killed, restart, draining, stopped)
//     in a bounded ring.
//   - Sampler reads the shm.Region directly (no RPC to any worker) and builds
//     a Frame: every global counter, per-second rates, one Worker view per
//     slot in use, and the recent events. It keeps the previous sample to
//     compute rates and each worker's CPU percentage. Options add what the
//     region does not hold, from the master's engine: the task kinds the
//     workers serve (WithKinds) and the progress of running tasks
//     (WithProgress).
//   - Hub ticks the Sampler (10 Hz by default), encodes each Frame to JSON
//     once and hands the same bytes to every WebSocket client. Each client
//     has a latest-wins mailbox of one frame and its own writer, so a slow
//     client skips frames instead of slowing the hub or the other clients; a
//     client whose write does not finish within the write timeout is dropped.
//
// # Events in frames
//
// A frame carries only the events added during the last EventWindow frames
// (2 s at 10 Hz), not the whole list every time. A client whose previous
// frame is at most EventWindow frames older has therefore been sent every
// event; the hub sends a client's first frame, and a frame to a client that
// skipped more than that, in full (the FrameEvents newest events; see
// Frame.Full), encoded at most once per tick and shared too. The page keeps
// its own list and de-duplicates by seq.
//
// # Wire format
//
// Every WebSocket message is one text message holding one Frame as JSON:
//
//	{
//	  "seq": 42,                       // increases by one per sample
//	  "time_ms": 1767225600000,        // sample time, unix milliseconds
//	  "counters": {"submitted": 0, …}, // every shm counter by its String() name
//	  "rates": {"completed_per_s": 0, "failed_per_s": 0, "submitted_per_s": 0},
//	  "queue_depth": 0,                // counters.queued
//	  "workers": [Worker, …],          // slots in use, by slot number
//	  "kinds": ["echo", "sleep"],      // task kinds, sorted (absent without WithKinds)
//	  "progress": [TaskProgress, …],   // ≤ 20 running tasks, latest update first (absent when none)
//	  "events": [Event, …]             // recent events (see above), oldest first
//	}
//
// The browser sends nothing; the server closes with status 1001 (going
// away) when the hub stops.
package dashboard
