package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestStopLeavesNoRegionBehind checks the harness's own cleanup: whatever
// state a test leaves its master in, it stops without leaving its region
// on /dev/shm or a worker behind.
func TestStopLeavesNoRegionBehind(t *testing.T) {
	tests := []struct {
		name string
		// kill9 kills the master with SIGKILL before the cleanup runs, as
		// the durability and flowctl tests do: it cannot remove its region.
		kill9 bool
		// busy leaves long tasks running: the first SIGTERM drains, the
		// second stops the master at once.
		busy bool
	}{
		{name: "idle master is stopped with SIGTERM"},
		{name: "busy master is stopped with a second SIGTERM", busy: true},
		{name: "master killed with -9 has its region removed", kill9: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startMaster(t, options{workers: 1})
			ws := m.waitReady(1)
			if m.region.path == "" || !m.region.exists() {
				t.Fatalf("harness found no region for master pid %d in %s", m.cmd.Process.Pid, m.RunDir)
			}
			if tt.busy {
				m.submit(sleepTasks(2, 60000))
				m.waitStat("in_flight", 2, 10*time.Second)
			}
			if tt.kill9 {
				m.signal(syscall.SIGKILL)
				m.waitExit(10 * time.Second)
				if !m.region.exists() {
					t.Fatalf("region %s gone after SIGKILL: nothing left to test", m.region.path)
				}
			}
			if !m.stop() {
				t.Fatal("the master needed SIGKILL to stop")
			}
			if !tt.kill9 {
				if code := m.cmd.ProcessState.ExitCode(); code != 0 {
					t.Fatalf("master exit code %d after SIGTERM, want 0\n%s", code, m.logs.String())
				}
			}
			if tt.busy {
				m.logs.waitFor(t, regexMust(`second signal: stopping now`), time.Second)
			}
			if m.region.exists() {
				t.Fatalf("region %s still on disk after stop", m.region.path)
			}
			waitFor(t, 5*time.Second, "worker gone with its master", func() bool { return !alive(ws[0].PID) })
		})
	}
}
