package dashboard_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
)

func TestEventLogRecent(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		adds    int
		recent  int
		wantSeq []uint64
	}{
		{"empty", 4, 0, 10, []uint64{}},
		{"fewer than asked", 4, 2, 10, []uint64{1, 2}},
		{"last n, oldest first", 4, 3, 2, []uint64{2, 3}},
		{"wrapped", 4, 6, 10, []uint64{3, 4, 5, 6}},
		{"wrapped, last two", 4, 7, 2, []uint64{6, 7}},
		{"n <= 0 means all", 3, 5, 0, []uint64{3, 4, 5}},
		{"default size", 0, dashboard.DefaultEventLogSize + 5, -1, seqRange(6, dashboard.DefaultEventLogSize+5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := dashboard.NewEventLog(tt.size)
			for i := 1; i <= tt.adds; i++ {
				l.Add(i%3, "ready", fmt.Sprintf("event %d", i))
			}
			got := l.Recent(tt.recent)
			if got == nil {
				t.Fatal("Recent returned nil, want an empty slice")
			}
			seqs := make([]uint64, len(got))
			for i, e := range got {
				seqs[i] = e.Seq
				if want := fmt.Sprintf("event %d", e.Seq); e.Message != want || e.Kind != "ready" || e.Slot != int(e.Seq)%3 || e.Time.IsZero() {
					t.Errorf("event %d = %+v, want message %q, kind ready, slot %d, a time", i, e, want, e.Seq%3)
				}
			}
			if !slices.Equal(seqs, tt.wantSeq) {
				t.Errorf("Recent(%d) seqs = %v, want %v", tt.recent, seqs, tt.wantSeq)
			}
			if want := min(tt.adds, max(tt.size, 0)); tt.size > 0 && l.Len() != want {
				t.Errorf("Len = %d, want %d", l.Len(), want)
			}
		})
	}
}

func seqRange(from, to int) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, uint64(i))
	}
	return s
}

func TestEventLogConcurrent(t *testing.T) {
	l := dashboard.NewEventLog(50)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				l.Add(g, "started", "x")
				if i%10 == 0 {
					ev := l.Recent(20)
					for j := 1; j < len(ev); j++ {
						if ev[j].Seq != ev[j-1].Seq+1 {
							t.Errorf("Recent not contiguous: %d after %d", ev[j].Seq, ev[j-1].Seq)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	ev := l.Recent(0)
	if len(ev) != 50 || ev[len(ev)-1].Seq != 8*500 {
		t.Fatalf("after 4000 adds: %d events, newest seq %d; want 50 and 4000", len(ev), ev[len(ev)-1].Seq)
	}
}
