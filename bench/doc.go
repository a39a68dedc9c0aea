// Command bench is the benchmark harness behind `make bench`.
//
// It starts the real bin/master (which forks the real bin/worker processes)
// the way a user does: a temporary --run-dir and --data-dir, --listen
// 127.0.0.1:0, the address read from the master's "listening on http://…"
// line. Load generators talk only to 127.0.0.1 (and to Unix sockets in the
// temporary directories), are bounded in count and time, and stop by
// themselves. Counters are read from the master's shared region, mapped
// read-only through <run-dir>/shm, so that measuring costs the master
// nothing.
//
// Scenarios (-scenario NAME, or all of them in order):
//
//	throughput   echo tasks over HTTP batch submit, memory store; 100,000 alone; gRPC SubmitStream
//	durable      the same with the bolt store, and its ratio to memory in the same run
//	concurrency  30 s sleep tasks until 1,000,000 are in flight: RSS, bytes per task, CPU
//	idle         master + 4 workers idle: RSS and CPU over 30 s
//	restart      kill -9 of a worker until its replacement is ready; redelivery latency
//	chaos        steady echo load while workers are killed: throughput over time (PNG)
//	shm          shared-counter increment from 2 processes vs a gRPC unary round trip
//	fanout       1,000 (and 100) dashboard WebSocket clients: master CPU, frame latency
//	baseline     the same echo work through an in-process goroutine pool, no IPC
//
// The report goes to bench/results/<date>.md and .json (a single scenario
// writes <date>-<scenario>.md and .json, so that it never overwrites a full
// run), the chaos plot to <date>-chaos.png. Every figure is printed next to
// its aim; a miss is reported as a miss.
//
// When the engine's throughput is far below its aim, the harness builds a
// profiling copy of the master and the worker with `go build -overlay`
// (adding one file, held in this package as a string, to each main
// package; nothing is added to the sources), reruns the throughput load
// under the CPU profiler, and puts `go tool pprof -top` of both in the
// report.
package main
