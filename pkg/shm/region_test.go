package shm_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// The test binary re-runs itself as a second process that increments the
// shared counters (GO_WANT_HELPER_PROCESS), so the test covers real
// cross-process atomics on one MAP_SHARED file.
func TestMain(m *testing.M) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") == "1" {
		if h := tableHelper(os.Getenv("SHM_HELPER")); h != nil {
			os.Exit(h())
		}
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

func helper() int {
	r, err := shm.Open(os.Getenv("SHM_PATH"), shm.OpenOptions{Slot: 0})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer r.Close()
	n, _ := strconv.Atoi(os.Getenv("SHM_N"))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				r.Counter(shm.Completed).Add(1)
				r.Slot(0).Half(0).Completed().Add(1)
			}
		}()
	}
	wg.Wait()
	return 0
}

func TestCrossProcessCountersExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	r, err := shm.Create(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const procs, perGoroutine = 3, 50000
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "SHM_PATH="+path, "SHM_N="+strconv.Itoa(perGoroutine))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// The test process increments concurrently too.
	for i := 0; i < perGoroutine; i++ {
		r.Counter(shm.Completed).Add(1)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	want := int64(procs*4*perGoroutine + perGoroutine)
	if got := r.Counter(shm.Completed).Load(); got != want {
		t.Fatalf("global completed = %d, want %d", got, want)
	}
	if got := r.Slot(0).Half(0).Completed().Load(); got != int64(procs*4*perGoroutine) {
		t.Fatalf("slot completed = %d, want %d", got, procs*4*perGoroutine)
	}
}

func TestOpenVerifiesHeader(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	r, err := shm.Create(good, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, make([]byte, shm.Size(4)), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)-shm.SlotSize], 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		path string
		opt  shm.OpenOptions
		want error
	}{
		{"ok", good, shm.OpenOptions{Slot: 3, MasterPID: os.Getpid()}, nil},
		{"zeroes", garbage, shm.OpenOptions{}, shm.ErrBadMagic},
		{"short file", short, shm.OpenOptions{}, shm.ErrSize},
		{"truncated", truncated, shm.OpenOptions{}, shm.ErrSize},
		{"slot out of range", good, shm.OpenOptions{Slot: 4}, shm.ErrSlot},
		{"other master", good, shm.OpenOptions{MasterPID: 1}, shm.ErrMaster},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := shm.Open(tt.path, tt.opt)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				o.Close()
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCreateIsOwnerOnlyAndExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	r, err := shm.Create(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode %v, want 0600", perm)
	}
	if _, err := shm.Create(path, 1); err == nil {
		t.Fatal("second Create of the same path succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("owner Close left the file: %v", err)
	}
}

func TestSeqlockSnapshotsAreConsistent(t *testing.T) {
	r, err := shm.Create(filepath.Join(t.TempDir(), "region"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := r.Slot(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Every field of one write carries the same number.
			s.SetIdentity(shm.Identity{PID: int(i), Generation: uint64(i), Restarts: i, LastExit: i})
			s.Half(0).Beat(shm.Heartbeat{At: time.Unix(0, i), RSSBytes: i, CPUTime: time.Duration(i), Goroutines: i})
		}
	}()
	for n := 0; n < 100000; n++ {
		id := s.Identity()
		if int64(id.PID) != id.Restarts || uint64(id.PID) != id.Generation || id.LastExit != id.Restarts {
			t.Fatalf("torn identity read: %+v", id)
		}
		hb := s.Half(0).Heartbeat()
		if hb.RSSBytes != hb.Goroutines || int64(hb.CPUTime) != hb.RSSBytes {
			t.Fatalf("torn heartbeat read: %+v", hb)
		}
	}
	close(stop)
	wg.Wait()
}

func TestHalvesAreSeparateAndResettable(t *testing.T) {
	r, err := shm.Create(filepath.Join(t.TempDir(), "region"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := r.Slot(1)
	s.SetIdentity(shm.Identity{PID: 42, State: shm.StateReady, Half: 1})
	old, cur := s.Half(0), s.Half(1)
	old.InFlight().Add(3) // a draining predecessor
	cur.SetCapacity(10)
	cur.InFlight().Add(5)
	cur.Completed().Add(7)
	cur.Beat(shm.Heartbeat{At: time.Now(), RSSBytes: 1})
	snap := s.Snapshot()
	if snap.InFlight != 8 || snap.Completed != 7 || snap.Capacity != 10 || snap.Half != 1 || snap.RSSBytes != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	cur.Reset()
	snap = s.Snapshot()
	if snap.InFlight != 3 || snap.Capacity != 0 || !snap.At.IsZero() || snap.RSSBytes != 0 {
		t.Fatalf("half not cleared: %+v", snap)
	}
	if snap.PID != 42 || snap.State != shm.StateReady {
		t.Fatalf("identity changed by Reset: %+v", snap.Identity)
	}
	if r.Slot(0).Snapshot().InFlight != 0 {
		t.Fatal("other slot touched")
	}
}
