package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// reopen opens the bolt file at path and closes it when the test ends.
func reopen(t *testing.T, path string) store.Store {
	t.Helper()
	s, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBoltReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", store.FileName)
	s, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*store.Record
	for i := range 50 {
		r := newRecord(i + 1)
		r.IdempotencyKey = fmt.Sprintf("key-%d", i)
		recs = append(recs, r)
	}
	mustCreate(t, s, recs...)
	want := map[string]*store.Record{}
	for i, r := range recs {
		switch i % 3 {
		case 0:
			want[r.ID] = r
		case 1:
			want[r.ID] = with(r, func(r *store.Record) { r.State = store.Running; r.Attempts = 1; r.WorkerSlot = 0 })
		case 2:
			want[r.ID] = with(r, func(r *store.Record) {
				r.State, r.Result, r.FinishedAt = store.Succeeded, []byte("done"), t0.Add(time.Hour)
			})
		}
		if i%3 != 0 {
			s.Update(want[r.ID])
		}
	}
	// Close flushes the pending Updates.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(path), path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := os.FileMode(0o600)
		if fi.IsDir() {
			wantMode = 0o700 | os.ModeDir
		}
		if fi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), wantMode)
		}
	}

	s = reopen(t, path)
	for id, w := range want {
		if d := diffRecord(mustGet(t, s, id), w); d != "" {
			t.Errorf("%s after reopen: %s", id, d)
		}
	}
	var open int
	if err := s.NonTerminal(context.Background(), func(*store.Record) error { open++; return nil }); err != nil {
		t.Fatal(err)
	}
	if open != 34 {
		t.Errorf("NonTerminal after reopen: %d records, want 34", open)
	}
	// Idempotency keys survive too.
	res := mustCreate(t, s, &store.Record{ID: taskID(999), State: store.Queued, IdempotencyKey: "key-7"})
	if res[0] != (store.CreateResult{ID: recs[7].ID, Existing: true}) {
		t.Errorf("key after reopen: %+v", res[0])
	}
}

// TestBoltCrashDurability kills a child with SIGKILL while it creates
// records and checks that every record it was told is durable is there.
func TestBoltCrashDurability(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	h := startHelper(t, helperCreate, path)
	var acked []string
	for len(acked) < 400 {
		l, ok := h.next(t, 30*time.Second)
		if !ok {
			t.Fatalf("helper exited after %d records", len(acked))
		}
		acked = append(acked, l)
	}
	acked = append(acked, h.kill(t)...)

	s := reopen(t, path)
	for _, id := range acked {
		r, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged record %s lost: %v", id, err)
		}
		if d := diffRecord(r, crashRecord(id)); d != "" {
			t.Fatalf("record %s: %s", id, d)
		}
	}
	// Each acknowledged idempotency key is known.
	res := mustCreate(t, s, &store.Record{ID: "ffffffffffffffff", State: store.Queued, IdempotencyKey: "idem-" + acked[0]})
	if res[0] != (store.CreateResult{ID: acked[0], Existing: true}) {
		t.Fatalf("idempotency key after crash: %+v", res[0])
	}
	n := 0
	if err := s.NonTerminal(context.Background(), func(*store.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n < len(acked) {
		t.Fatalf("NonTerminal found %d records, %d were acknowledged", n, len(acked))
	}
	t.Logf("%d acknowledged records survived SIGKILL (%d stored)", len(acked), n)
}

// TestBoltFlushCrash: Updates made durable by Flush survive SIGKILL.
func TestBoltFlushCrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	h := startHelper(t, helperFlush, path)
	if l, ok := h.next(t, 30*time.Second); !ok || l != "flushed" {
		t.Fatalf("helper said %q, want flushed", l)
	}
	time.Sleep(20 * time.Millisecond) // let it commit some unflushed Updates too
	h.kill(t)

	s := reopen(t, path)
	running := 0
	for i := range flushCount {
		id := fmt.Sprintf("%016x", i)
		got := mustGet(t, s, id)
		if got.State == store.Running {
			running++ // a later, unflushed Update that happened to commit
			continue
		}
		if d := diffRecord(got, flushedRecord(crashRecord(id))); d != "" {
			t.Fatalf("flushed record %s: %s", id, d)
		}
	}
	t.Logf("%d of %d records also had a later unflushed Update committed", running, flushCount)
}

// TestBoltLocked: a second master on the same file gets ErrLocked after
// about LockTimeout, and the file opens once the first one is gone.
func TestBoltLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	h := startHelper(t, helperHold, path)
	if l, ok := h.next(t, 30*time.Second); !ok || l != "ready" {
		t.Fatalf("helper said %q, want ready", l)
	}
	start := time.Now()
	_, err := store.OpenBolt(path, &store.Options{LockTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Open of a locked file: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("error %q does not name the path and the cause", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > time.Second {
		t.Errorf("ErrLocked after %v, want about 100ms", elapsed)
	}
	// Let the child close the store and exit.
	_ = h.stdin.Close()
	if _, ok := h.next(t, 30*time.Second); ok {
		t.Fatal("unexpected output from the helper")
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	reopen(t, path)
}

// TestBoltLockedInProcess: the lock also holds between two stores of one
// process.
func TestBoltLockedInProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	reopen(t, path)
	if _, err := store.OpenBolt(path, &store.Options{LockTimeout: 10 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// validDB writes a bolt file with n records whose payloads carry a marker,
// all in one transaction (so no stale copies of pages), and returns its
// path.
func validDB(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), store.FileName)
	s, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*store.Record
	for i := range n {
		r := newRecord(i + 1)
		r.Payload = []byte(fmt.Sprintf("MARKER-%05d-%s", i, strings.Repeat("x", 100)))
		recs = append(recs, r)
	}
	if _, err := s.Create(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// overwritePages replaces every page of the file that contains marker with
// what fill returns.
func overwritePages(t *testing.T, path, marker string, fill func(size int) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	hit := 0
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(marker))
		if i < 0 {
			break
		}
		page := (off + i) / ps * ps
		copy(data[page:page+ps], fill(ps))
		off = page + ps
		hit++
	}
	if hit == 0 {
		t.Fatalf("marker %q not found", marker)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bumpBranchKey finds a branch page whose keys are task IDs and raises the
// last byte of its second key, reporting whether it found one. Page layout
// (bbolt): id u64, flags u16 (0x01 = branch), count u16, overflow u32, then
// count elements of pos u32, ksize u32, pgid u64; pos is relative to the
// element.
func bumpBranchKey(data []byte) bool {
	ps := os.Getpagesize()
	for off := 2 * ps; off+ps <= len(data); off += ps {
		p := data[off : off+ps]
		flags := binary.LittleEndian.Uint16(p[8:])
		count := int(binary.LittleEndian.Uint16(p[10:]))
		if flags != 0x01 || count < 3 {
			continue
		}
		el := p[16+16 : 16+32] // element 1
		pos := int(binary.LittleEndian.Uint32(el[0:]))
		ksize := int(binary.LittleEndian.Uint32(el[4:]))
		if ksize != 16 {
			continue
		}
		k := p[16+16+pos : 16+16+pos+ksize]
		k[15]++
		return true
	}
	return false
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// TestBoltCorrupt: a file that is not a healthy bbolt database gives
// ErrCorrupt naming the path, and its bytes are left as they were.
func TestBoltCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		make func(t *testing.T) string
	}{
		{"random bytes", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), store.FileName)
			if err := os.WriteFile(path, randomBytes(64<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"short garbage", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), store.FileName)
			if err := os.WriteFile(path, []byte("hello, not a database"), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"both meta pages overwritten", func(t *testing.T) string {
			path := validDB(t, 10)
			data, _ := os.ReadFile(path)
			ps := os.Getpagesize()
			copy(data[:2*ps], randomBytes(2*ps))
			_ = os.WriteFile(path, data, 0o600)
			return path
		}},
		{"meta checksum flipped", func(t *testing.T) string {
			path := validDB(t, 10)
			data, _ := os.ReadFile(path)
			ps := os.Getpagesize()
			data[16+20] ^= 0xff    // a byte inside meta 0 (after the page header)
			data[ps+16+20] ^= 0xff // and meta 1
			_ = os.WriteFile(path, data, 0o600)
			return path
		}},
		{"data page random", func(t *testing.T) string {
			path := validDB(t, 300)
			overwritePages(t, path, "MARKER-00150-", randomBytes)
			return path
		}},
		{"data page zeroed", func(t *testing.T) string {
			path := validDB(t, 300)
			overwritePages(t, path, "MARKER-00010-", func(n int) []byte { return make([]byte, n) })
			return path
		}},
		{"record undecodable", func(t *testing.T) string {
			// The pages are sound, one value is not a TaskRecord: the tag
			// before the payload gets the reserved wire type 7.
			path := validDB(t, 300)
			data, _ := os.ReadFile(path)
			i := bytes.Index(data, []byte("MARKER-00200-"))
			if i < 2 || data[i-2] != 0x1a {
				t.Fatalf("payload tag not found before the marker")
			}
			data[i-2] = 0x0f
			_ = os.WriteFile(path, data, 0o600)
			return path
		}},
		{"branch key out of order", func(t *testing.T) string {
			// Pages that each look sound, but a branch key is larger than
			// the first key of its child: only a full consistency check
			// sees it (and bbolt's writable Open would panic on it).
			path := validDB(t, 300)
			data, _ := os.ReadFile(path)
			if !bumpBranchKey(data) {
				t.Fatal("no branch page found")
			}
			_ = os.WriteFile(path, data, 0o600)
			return path
		}},
		{"truncated", func(t *testing.T) string {
			path := validDB(t, 300)
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			return path
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.make(t)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := store.OpenBolt(path, nil)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open of a corrupt file succeeded")
			}
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatalf("Open changed the corrupt file (%d bytes before, %d after)", len(before), len(after))
			}
		})
	}
}

// TestBoltRandomPageDamage overwrites one random page of a valid file at a
// time: Open either fails with ErrCorrupt leaving the file as it was, or
// (a free or otherwise unused page) succeeds and reads every record.
func TestBoltRandomPageDamage(t *testing.T) {
	t.Parallel()
	good := validDB(t, 300)
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	pages := len(orig) / ps
	rng := mrand.New(mrand.NewPCG(1, 2))
	corrupt := 0
	for round := range 20 {
		data := bytes.Clone(orig)
		p := 2 + rng.IntN(pages-2)
		copy(data[p*ps:(p+1)*ps], randomBytes(ps))
		path := filepath.Join(t.TempDir(), fmt.Sprintf("r%d.db", round))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := store.OpenBolt(path, nil)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("page %d: err = %v, want ErrCorrupt", p, err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, data) {
				t.Fatalf("page %d: Open changed the corrupt file", p)
			}
			corrupt++
			continue
		}
		n := 0
		err = s.NonTerminal(context.Background(), func(*store.Record) error { n++; return nil })
		_ = s.Close()
		if err != nil || n != 300 {
			t.Fatalf("page %d: opened, but NonTerminal = %d records, %v", p, n, err)
		}
	}
	t.Logf("%d of 20 damaged files were reported corrupt (the rest hit unused pages)", corrupt)
}

func TestBoltEmptyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := reopen(t, path)
	mustCreate(t, s, newRecord(1))
}

func TestBoltUnwritable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"parent is a file": filepath.Join(file, "data", store.FileName),
		"path is a dir":    dir,
	}
	if os.Geteuid() != 0 { // root ignores permission bits
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		cases["read-only dir"] = filepath.Join(ro, store.FileName)
		cases["read-only dir, new subdir"] = filepath.Join(ro, "data", store.FileName)
	}
	for name, path := range cases {
		s, err := store.OpenBolt(path, nil)
		if err == nil {
			_ = s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrLocked) {
			t.Errorf("%s: misclassified: %v", name, err)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name %s", name, err, path)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := store.Open("bolt", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "atomicflow.db")); err != nil {
		t.Fatalf("bolt store file: %v", err)
	}
	s, err = store.Open("memory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	_, err = store.Open("sqlite", dir, nil)
	if !errors.Is(err, store.ErrUnknownKind) || !strings.Contains(err.Error(), `"bolt"`) || !strings.Contains(err.Error(), `"memory"`) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestParseState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		terminal bool
		ok       bool
	}{
		{"queued", false, true}, {"running", false, true}, {"succeeded", true, true},
		{"failed", true, true}, {"dead", true, true}, {"canceled", true, true},
		{"", false, false}, {"Queued", false, false}, {"cancelled", false, false},
	} {
		st, err := store.ParseState(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseState(%q) err = %v", tc.in, err)
			continue
		}
		if tc.ok && (string(st) != tc.in || st.Terminal() != tc.terminal) {
			t.Errorf("ParseState(%q) = %q terminal=%v", tc.in, st, st.Terminal())
		}
	}
}

// A sound bbolt file of another program is refused and left byte for byte
// as it was.
func TestBoltForeignDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), store.FileName)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("users"))
		if err != nil {
			return err
		}
		return b.Put([]byte("alice"), []byte("admin"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(path, nil)
	if !errors.Is(err, store.ErrForeign) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("OpenBolt of another program's database: err = %v, want ErrForeign", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"users"`) {
		t.Errorf("error %q should name the file and the foreign bucket", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the foreign database was changed")
	}
}
