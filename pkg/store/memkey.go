package store

// hexKey is the value of an ID in the engine's form, 16 lowercase hex
// digits; ok is false for any other ID. Among such IDs the numeric order
// is the string order. It runs several times per update, so it checks and
// converts eight digits at a time.
func hexKey(id string) (k uint64, ok bool) {
	if len(id) != 16 {
		return 0, false
	}
	hi, ok1 := hex8(word(id[:8]))
	lo, ok2 := hex8(word(id[8:]))
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<32 | lo, true
}

// word is the first 8 bytes of s as a little-endian word.
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hex8 converts 8 lowercase hex digits, the first in the low byte of x,
// to their 32-bit value.
func hex8(x uint64) (uint64, bool) {
	const (
		ones = 0x0101010101010101
		high = 0x80 * ones
	)
	// With every byte below 0x80, adding 0x80-c to a byte sets its high
	// bit exactly when the byte is >= c, without carries between bytes.
	digit := (x + (0x80-'0')*ones) &^ (x + (0x80-'9'-1)*ones) & high
	letter := (x + (0x80-'a')*ones) &^ (x + (0x80-'f'-1)*ones) & high
	ok := x&high == 0 && digit|letter == high
	v := x&(0x0f*ones) + (letter>>7)*9 // a nibble per byte
	v = (v<<4 | v>>8) & 0x00ff00ff00ff00ff
	v = (v<<8 | v>>16) & 0x0000ffff0000ffff
	v = (v<<16 | v>>32) & 0xffffffff
	return v, ok
}

// hexDigit is the value of a lowercase hex digit.
func hexDigit(c byte) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10, true
	}
	return 0, false
}

// ceilHex is the least key whose ID (16 lowercase hex digits) sorts after
// the string after; ok is false when no such ID sorts after it.
func ceilHex(after string) (k uint64, ok bool) {
	for i := range 16 {
		if i == len(after) {
			// after is a proper prefix: the prefix with zeros follows it.
			return k << (4 * (16 - i)), true
		}
		c := after[i]
		if d, ok := hexDigit(c); ok {
			k = k<<4 | d
			continue
		}
		// The first digit that differs decides: the least digit above c,
		// then zeros; if none is above c, the prefix plus one.
		var d uint64
		switch {
		case c < '0':
			d = 0
		case c < 'a':
			d = 10
		default:
			if k == 1<<(4*i)-1 { // prefix all f (or empty)
				return 0, false
			}
			return (k + 1) << (4 * (16 - i)), true
		}
		return (k<<4 | d) << (4 * (15 - i)), true
	}
	// The first 16 bytes are the ID of k, which is not above after.
	if k == 1<<64-1 {
		return 0, false
	}
	return k + 1, true
}

// terminalStates has bit i set when allStates()[i] is terminal.
const terminalStates = 1<<2 | 1<<3 | 1<<4 | 1<<5

// terminalIndex reports whether the state of index i is terminal.
func terminalIndex(i int8) bool { return terminalStates&(1<<i) != 0 }
