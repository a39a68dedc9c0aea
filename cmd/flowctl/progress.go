package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often the progress bar is redrawn.
const progressEvery = 100 * time.Millisecond

// progress draws a one-line progress bar on a terminal until finish. On
// anything that is not a terminal it draws nothing.
type progress struct {
	w     io.Writer
	label string
	total int64 // 0: unknown
	done  *atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startProgress starts a bar of done out of total (0 when the total is not
// known) on w, when w is a terminal.
func startProgress(w io.Writer, label string, total int64, done *atomic.Int64) *progress {
	p := &progress{w: w, label: label, total: total, done: done, start: time.Now()}
	if !isTerminal(w) {
		return p
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprint(p.w, "\r\033[K"+p.line(time.Now()))
			case <-p.stop:
				fmt.Fprint(p.w, "\r\033[K")
				return
			}
		}
	}()
	return p
}

// line renders the bar at time now.
func (p *progress) line(now time.Time) string {
	n := p.done.Load()
	r := rate(n, now.Sub(p.start))
	if p.total <= 0 {
		return fmt.Sprintf("%s %d tasks  %.0f/s", p.label, n, r)
	}
	const width = 30
	frac := min(1, float64(n)/float64(p.total))
	fill := int(frac * width)
	return fmt.Sprintf("%s [%s%s] %d/%d %3.0f%%  %.0f/s", p.label,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), n, p.total, frac*100, r)
}

// finish stops the bar and clears its line.
func (p *progress) finish() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
}
