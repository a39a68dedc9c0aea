package api_test

import (
	"bytes"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/api"
)

// BenchmarkDecodeBatch decodes the bench harness's batch body: 10,000 ×
// {"kind":"echo","payload":{"n":1}}.
func BenchmarkDecodeBatch(b *testing.B) {
	const n = 10_000
	var buf bytes.Buffer
	buf.WriteString(`{"tasks":[`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"kind":"echo","payload":{"n":1}}`)
	}
	buf.WriteString(`]}`)
	body := buf.Bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		subs, err := api.DecodeBatch(bytes.NewReader(body), n)
		if err != nil || len(subs) != n {
			b.Fatal(len(subs), err)
		}
	}
}
