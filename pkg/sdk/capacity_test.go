package sdk

import "testing"

func TestEffectiveCapacity(t *testing.T) {
	tests := []struct {
		name        string
		own, master int
		want        int
	}{
		{"neither", 0, 0, DefaultCapacity},
		{"the master's only", 0, 20000, 20000},
		{"the worker's only", 8, 0, 8},
		{"the worker's, below the master's", 8, 10000, 8},
		{"the master's, below the worker's", 50000, 10000, 10000},
		{"equal", 64, 64, 64},
		{"a negative own figure counts as unset", -1, 300, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := effectiveCapacity(tt.own, tt.master); got != tt.want {
				t.Errorf("effectiveCapacity(%d, %d) = %d, want %d", tt.own, tt.master, got, tt.want)
			}
		})
	}
}
