package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestNumericKey(t *testing.T) {
	for _, tc := range []struct {
		id string
		k  uint64
		ok bool
	}{
		{"0000000000000000", 0, true},
		{"00000000000000ff", 255, true},
		{"ffffffffffffffff", 1<<64 - 1, true},
		{"187a3c5e9b000001", 0x187a3c5e9b000001, true},
		{"187A3C5E9B000001", 0, false}, // upper case sorts differently
		{"187a3c5e9b00001", 0, false},
		{"187a3c5e9b0000011", 0, false},
		{"g000000000000000", 0, false},
		{"", 0, false},
	} {
		if k, ok := hexKey(tc.id); k != tc.k || ok != tc.ok {
			t.Errorf("hexKey(%q) = %x, %v; want %x, %v", tc.id, k, ok, tc.k, tc.ok)
		}
	}
}

// TestCeilHex checks ceilHex against its definition: for every key k,
// hex(k) > after exactly when k >= ceilHex(after).
func TestCeilKey(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := "0189aef/:@AFGZ`gz~\x00\xff"
	randomString := func() string {
		b := make([]byte, r.IntN(19))
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[i] = "0123456789abcdef"[r.IntN(16)]
			}
		}
		return string(b)
	}
	keys := []uint64{0, 1, 1<<64 - 1, 1<<64 - 2, 0xa000000000000000, 0x9fffffffffffffff}
	for range 200 {
		keys = append(keys, r.Uint64())
	}
	var afters []string
	for range 3000 {
		afters = append(afters, randomString())
	}
	for _, k := range keys[:20] {
		id := fmt.Sprintf("%016x", k)
		afters = append(afters, id, id[:r.IntN(16)], id+"0", id[:15]+"g", id[:8]+"z")
	}
	afters = append(afters, "", "ffffffffffffffff", "fffffffffffffffg", "fffz", "z", "\xff", "0000000000000000")
	for _, after := range afters {
		c, ok := ceilHex(after)
		for _, k := range keys {
			above := fmt.Sprintf("%016x", k) > after
			if want := ok && k >= c; above != want {
				t.Fatalf("ceilHex(%q) = %x, %v: key %016x above = %v", after, c, ok, k, above)
			}
		}
		// The bound itself, and its predecessor, are on the right sides.
		if ok {
			if id := fmt.Sprintf("%016x", c); id <= after {
				t.Fatalf("ceilHex(%q) = %s, not above", after, id)
			}
			if c > 0 {
				if id := fmt.Sprintf("%016x", c-1); id > after {
					t.Fatalf("ceilHex(%q) = %x, but %s is above too", after, c, id)
				}
			}
		} else if after < "ffffffffffffffff" {
			t.Fatalf("ceilHex(%q): none, but ffffffffffffffff is above", after)
		}
	}
}

func TestTerminalBits(t *testing.T) {
	for i, st := range allStates() {
		if terminalIndex(int8(i)) != st.Terminal() {
			t.Errorf("terminalIndex(%d) = %v, %s.Terminal() = %v", i, terminalIndex(int8(i)), st, st.Terminal())
		}
	}
}

// TestNumericKeyBytes checks hexKey against a byte-by-byte parse for
// every byte value in every position.
func TestNumericKeyBytes(t *testing.T) {
	slow := func(id string) (uint64, bool) {
		if len(id) != 16 {
			return 0, false
		}
		var k uint64
		for i := range 16 {
			d, ok := hexDigit(id[i])
			if !ok {
				return 0, false
			}
			k = k<<4 | d
		}
		return k, true
	}
	r := rand.New(rand.NewPCG(8, 9))
	for range 200 {
		b := []byte(fmt.Sprintf("%016x", r.Uint64()))
		for i := range b {
			orig := b[i]
			for c := range 256 {
				b[i] = byte(c)
				k, ok := hexKey(string(b))
				if wk, wok := slow(string(b)); k != wk && wok || ok != wok {
					t.Fatalf("hexKey(%q) = %x, %v; want %x, %v", b, k, ok, wk, wok)
				}
			}
			b[i] = orig
		}
	}
}
