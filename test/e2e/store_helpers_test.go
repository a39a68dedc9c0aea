package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func regexMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// storeStates opens a stopped master's bolt store and counts the states of ids.
func storeStates(t *testing.T, dataDir string, ids []string) map[string]int {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(dataDir, "atomicflow.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]int{}
	for _, id := range ids {
		r, err := st.Get(context.Background(), id)
		if err != nil {
			out["missing"]++
			continue
		}
		out[string(r.State)]++
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func sameContent(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
