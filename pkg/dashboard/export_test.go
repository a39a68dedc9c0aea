package dashboard

// EncodeCounts reports how many ticks the hub ran, how many frames it
// encoded for them, and how many full frames (Frame.Full) it encoded for
// clients that needed one.
func (h *Hub) EncodeCounts() (ticks, encodes, fullEncodes int64) {
	return h.ticks.Load(), h.encodes.Load(), h.fullEncodes.Load()
}
