package engine

import "container/heap"

// fifo is a queue of tasks: a slice with a moving head, compacted when
// the dead prefix grows past half.
type fifo struct {
	items []*task
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(t *task) { q.items = append(q.items, t) }

func (q *fifo) pushFront(t *task) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = t
		return
	}
	q.items = append([]*task{t}, q.items...)
}

func (q *fifo) pop() *task {
	if q.head >= len(q.items) {
		return nil
	}
	t := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return t
}

// delayed is a min-heap of tasks waiting for their retry time.
type delayed []*task

func (d delayed) Len() int           { return len(d) }
func (d delayed) Less(i, j int) bool { return d[i].runAt.Before(d[j].runAt) }
func (d delayed) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *delayed) Push(x any)        { *d = append(*d, x.(*task)) }
func (d *delayed) Pop() any {
	old := *d
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	return t
}

func (d *delayed) add(t *task) { heap.Push(d, t) }
func (d *delayed) next() *task {
	if len(*d) == 0 {
		return nil
	}
	return (*d)[0]
}
func (d *delayed) take() *task { return heap.Pop(d).(*task) }
