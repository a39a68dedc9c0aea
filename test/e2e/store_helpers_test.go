package e2e

import (
	"context"
	"path/filepath"
	"regexp"
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
